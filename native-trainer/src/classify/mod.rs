//! Which attribute classifier reads the images (`--classifier`, run.toml's `[classify]`), loaded with its
//! weights; and the attribute CSV every classification writes (`attributes.rs`).

pub mod attributes;

use crate::backend::{Backend as B, device};
use crate::error::{CliResult, input};
use clap::builder::TypedValueParser;
use popalign_core::eval::classify::AttributeClassifier;
use popalign_core::eval::classify::clip_zero_shot::{ClipZeroShot, default_axes};
use popalign_core::eval::classify::detected::{DetectedFaces, FaceCrop, FaceDetector};
use popalign_core::eval::classify::kind::ClassifierKind;
use popalign_core::eval::face_attributes::deepface::DeepFace;
use popalign_core::eval::face_attributes::{
    DlibAgeGender, DlibGender, FAIRFACE_CHIP_SIZE, FairFace,
};
use popalign_core::models::face::{Mtcnn, MtcnnConfig};
use popalign_core::models::yunet::YuNet;
use popalign_core::toy::{TOY, ToyClassifier};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which attribute classifier reads the images, and its weights: `popalign classify`'s flags, and
/// `run.toml`'s `[classify]` table (same names, `-` as `_`).
#[derive(clap::Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierArgs {
    /// Which classifier reads the images: `toy` (the toy world's palette classifier), `faces` (MTCNN,
    /// then the CC0 dlib gender and age networks on the largest face), `fairface` (MTCNN, then FairFace's
    /// ResNet-34: gender, race, age), `deepface` (MTCNN, then DeepFace's VGG-Face gender and race models, as
    /// PopAlign's official evaluation), or `clip` (CLIP zero-shot on the whole image).
    #[arg(long, default_value_t = ClassifierKind::Toy, value_parser = kind_parser())]
    pub classifier: ClassifierKind,
    /// For `--classifier faces`: a folder with `mtcnn.safetensors` and `gender.safetensors`, and
    /// `age.safetensors` for the age axis (see `tools/fixtures/README.md` for how each is made).
    /// For `--classifier fairface`: a folder with `mtcnn.safetensors` and `fairface.safetensors`
    /// (made by `tools/convert_fairface.py`).
    /// For `--classifier deepface`: a folder with `mtcnn.safetensors`, `deepface_gender.safetensors` and
    /// `deepface_race.safetensors` (made by `tools/convert_deepface.py` from DeepFace's `.h5` files).
    /// For `--classifier clip`: a transformers `CLIPModel` folder (`config.json`, `model.safetensors`,
    /// `vocab.json` and `merges.txt` there or in `tokenizer/`), or its Hugging Face repo id.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// For the face classifiers: the smallest face MTCNN looks for, in pixels.
    #[arg(long, default_value_t = 20.0)]
    #[serde(default = "min_face_size")]
    pub min_face_size: f64,
    /// For the face classifiers: P-, R- and O-Net probability thresholds.
    #[arg(long, value_delimiter = ',', default_values_t = [0.6, 0.7, 0.7])]
    #[serde(default = "face_thresholds")]
    pub face_thresholds: Vec<f64>,
    /// For `--classifier deepface`: the face detector, `mtcnn` or `yunet` (the official evaluation's, run as
    /// DeepFace's `yunet` backend runs it: score 0.9, best score first; needs `yunet.safetensors` in the weights
    /// folder, made by `tools/convert_yunet.py` from opencv_zoo's `face_detection_yunet_2023mar.onnx`).
    #[arg(long, value_enum, default_value_t = Detector::Mtcnn)]
    #[serde(default)]
    pub detector: Detector,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detector {
    #[default]
    Mtcnn,
    Yunet,
}

/// `--classifier`: the names [`ClassifierKind`] reads, listed in `--help`.
fn kind_parser() -> impl clap::builder::TypedValueParser<Value = ClassifierKind> {
    clap::builder::PossibleValuesParser::new(ClassifierKind::ALL.map(ClassifierKind::name))
        .map(|name| name.parse().expect("one of the possible values"))
}

fn min_face_size() -> f64 {
    20.0
}

fn face_thresholds() -> Vec<f64> {
    vec![0.6, 0.7, 0.7]
}

/// The converted YuNet weights `--detector yunet` reads from the weights folder.
const YUNET_FILE: &str = "yunet.safetensors";

/// FairFace read dlib chips padded by 25% of the face on each side; MTCNN's box is tight, so its 224 crop
/// gets a margin of a third of the output (the face then spans 224 / 1.5 pixels, as in a FairFace chip).
const FAIRFACE_MARGIN: usize = FAIRFACE_CHIP_SIZE / 3;

/// The classifier `args` names, its weights (a folder, or a repo id in the Hugging Face cache) resolved
/// against `base`.
pub fn load_classifier(
    args: &ClassifierArgs,
    base: &Path,
) -> CliResult<Box<dyn AttributeClassifier<B>>> {
    let weights = || {
        let needs = match args.classifier {
            ClassifierKind::Toy => return Ok(PathBuf::new()),
            ClassifierKind::Fairface => "a folder with mtcnn.safetensors and fairface.safetensors",
            ClassifierKind::Deepface => {
                "a folder with mtcnn.safetensors, deepface_gender.safetensors and deepface_race.safetensors"
            }
            ClassifierKind::Faces => {
                "a folder with mtcnn.safetensors, gender.safetensors and optionally age.safetensors"
            }
            ClassifierKind::Clip => "a CLIPModel folder with its tokenizer",
        };
        let dir = args.weights.as_deref().ok_or_else(|| {
            input(format!(
                "classifier {} needs weights (--weights DIR, or `weights` in run.toml's [classify]): \
                 {needs}",
                args.classifier
            ))
        })?;
        crate::hub::resolve_model(dir, base)
    };
    Ok(match args.classifier {
        ClassifierKind::Toy => Box::new(ToyClassifier::<B>::new(&TOY, &device())),
        ClassifierKind::Faces | ClassifierKind::Fairface | ClassifierKind::Deepface => {
            face_classifier(args, &weights()?)?
        }
        ClassifierKind::Clip => Box::new(ClipZeroShot::<B>::from_dir(
            &weights()?,
            default_axes(),
            &device(),
        )?),
    })
}

/// MTCNN plus the heads from `dir`: FairFace, DeepFace, or the dlib networks (the age axis only where
/// `age.safetensors` is there).
fn face_classifier(
    args: &ClassifierArgs,
    dir: &Path,
) -> CliResult<Box<dyn AttributeClassifier<B>>> {
    if args.detector == Detector::Yunet && args.classifier != ClassifierKind::Deepface {
        return Err(input(format!(
            "--detector yunet is for --classifier deepface (DeepFace's own detector); {} reads MTCNN's crops",
            args.classifier
        )));
    }
    let device = device();
    // The dlib networks take facenet-pytorch's default crop (160, no margin).
    let defaults = MtcnnConfig::default();
    let mut crop = FaceCrop::Standardised;
    let (heads, image_size, margin): (Box<dyn AttributeClassifier<B>>, _, _) = match args.classifier
    {
        ClassifierKind::Deepface => {
            // DeepFace reads the detector's box itself, at the image's resolution.
            crop = FaceCrop::Box;
            (
                Box::new(DeepFace::<B>::from_dir(dir, &device)?),
                defaults.image_size,
                defaults.margin,
            )
        }
        ClassifierKind::Fairface => (
            Box::new(FairFace::<B>::load(
                &dir.join("fairface.safetensors"),
                &device,
            )?),
            FAIRFACE_CHIP_SIZE,
            FAIRFACE_MARGIN,
        ),
        _ if dir.join("age.safetensors").exists() => (
            Box::new(DlibAgeGender::<B>::from_dir(dir, &device)?),
            defaults.image_size,
            defaults.margin,
        ),
        _ => (
            Box::new(DlibGender::<B>::from_dir(dir, &device)?),
            defaults.image_size,
            defaults.margin,
        ),
    };
    let [p, r, o] = args.face_thresholds[..] else {
        return Err(input(format!(
            "--face-thresholds takes three values (P-, R-, O-Net), got {:?}",
            args.face_thresholds
        )));
    };
    let config = MtcnnConfig {
        min_face_size: args.min_face_size,
        thresholds: [p, r, o],
        image_size,
        margin,
        ..defaults
    };
    let detector = match args.detector {
        Detector::Mtcnn => FaceDetector::Mtcnn(
            Mtcnn::load(dir, &device)?
                .with_config(config)
                .map_err(input)?,
        ),
        Detector::Yunet => FaceDetector::YuNet(YuNet::load(&dir.join(YUNET_FILE), &device)?),
    };
    Ok(Box::new(DetectedFaces {
        detector,
        heads,
        crop,
    }))
}
