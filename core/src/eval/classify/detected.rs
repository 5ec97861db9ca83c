//! A face classifier for whole images: a detector finds the faces, and attribute heads that read aligned
//! face chips (the dlib gender and age networks, FairFace, CLIP zero-shot, DeepFace) read the first face.
//!
//! The detector is MTCNN, or YuNet for DeepFace's heads (the official evaluation's `detector_backend='yunet'`).
//! "First" is the detector's order: for MTCNN the largest box (facenet-pytorch's `select_largest`), for YuNet the
//! best score (DeepFace keeps the detector's order, and the official script reads its first face). An image without a face is reported
//! as such (`face_found = false`), never dropped. The chip is MTCNN's square crop of the box
//! (`image_size` × `image_size`, margin from the config), not a landmark alignment; or, for heads that
//! resize crops themselves as DeepFace does ([`FaceCrop::Box`]), the box's own pixels. Each result carries
//! how many faces the image had and the chosen face's box and detector score; `classify_each_face` reads
//! every face instead of the first (`popalign classify --all-faces`).

use burn::prelude::*;

use super::{AttributeClassifier, Attributes, AxisSpec, FaceDetection};
use crate::models::face::extract::crop_box;
use crate::models::face::{Face, Mtcnn};
use crate::models::yunet::YuNet;

pub struct DetectedFaces<B: Backend> {
    pub detector: FaceDetector<B>,
    pub heads: Box<dyn AttributeClassifier<B>>,
    pub crop: FaceCrop,
}

/// The detector in front of the heads.
pub enum FaceDetector<B: Backend> {
    Mtcnn(Mtcnn<B>),
    /// Read as DeepFace's `yunet` backend reads it ([`YuNet::detect_deepface`]); its faces can only be given to
    /// the heads as [`FaceCrop::Box`].
    YuNet(YuNet<B>),
}

/// A detected face: its box `[x1, y1, x2, y2]`, the detector's score, and MTCNN's face for MTCNN's crop.
struct Found {
    bbox: [f32; 4],
    score: f32,
    mtcnn: Option<Face>,
}

/// What the heads are given of a detected face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaceCrop {
    /// facenet-pytorch's `extract_face`: a square `image_size` crop with the configured margin.
    #[default]
    Standardised,
    /// The box's pixels at the image's resolution, its corners truncated to whole pixels (as DeepFace
    /// crops `img[y:y+h, x:x+w]` from its detectors' integer boxes), any aspect ratio.
    Box,
}

impl<B: Backend> DetectedFaces<B> {
    /// The first face's chip of one `[3, H, W]` image in [0, 1], as `[1, 3, S, S]` in [0, 1], or `None`
    /// without a face. Reads back asynchronously, so the browser runs it on burn-wgpu; the heads' outputs
    /// are then read back by the caller.
    pub async fn first_face_chip(
        detector: &Mtcnn<B>,
        image: Tensor<B, 3>,
    ) -> Result<Option<Tensor<B, 4>>, String> {
        let Some(face) = detector
            .detect_async(to_bytes(image.clone()))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        standardised_chip(detector, image, &face).await
    }

    /// `face`'s chip of `image` (`[3, H, W]` in [0, 1]) as the heads take it, `[1, 3, h, w]` in [0, 1], or
    /// `None` when the box holds no whole pixel.
    fn chip(&self, image: Tensor<B, 3>, face: &Found) -> Option<Tensor<B, 4>> {
        match (self.crop, &self.detector, &face.mtcnn) {
            (FaceCrop::Standardised, FaceDetector::Mtcnn(mtcnn), Some(mtcnn_face)) => {
                futures_lite::future::block_on(standardised_chip(mtcnn, image, mtcnn_face))
                    .unwrap_or_else(|e| panic!("MTCNN: {e}"))
            }
            (FaceCrop::Standardised, ..) => panic!("only MTCNN's faces have its standardised crop"),
            (FaceCrop::Box, ..) => {
                let [_, height, width] = image.dims();
                // No margin (the output size only scales the margin, so any size will do).
                let [x0, y0, x1, y1] = crop_box(face.bbox, 1, 0, width, height)?;
                Some(image.slice([0..3, y0..y1, x0..x1]).unsqueeze())
            }
        }
    }

    /// Every face of one image, in the detector's order.
    fn detect(&self, image: Tensor<B, 3>) -> Vec<Found> {
        match &self.detector {
            FaceDetector::Mtcnn(mtcnn) => mtcnn
                .detect(to_bytes(image))
                .into_iter()
                .map(|face| Found {
                    bbox: face.bbox,
                    score: face.probability,
                    mtcnn: Some(face),
                })
                .collect(),
            FaceDetector::YuNet(yunet) => yunet
                .detect_deepface(to_bytes(image))
                .into_iter()
                .map(|(bbox, score)| Found {
                    bbox,
                    score,
                    mtcnn: None,
                })
                .collect(),
        }
    }

    /// Every face of one image, in the detector's order, each read by the heads; one "no face" entry without
    /// any.
    fn faces(&self, image: Tensor<B, 3>, all: bool) -> Vec<Attributes> {
        let faces = self.detect(image.clone());
        let count = faces.len();
        let mut out: Vec<Attributes> = faces
            .iter()
            .enumerate()
            .take(if all { count } else { 1 })
            .filter_map(|(index, face)| {
                let mut attributes = self
                    .heads
                    .classify(self.chip(image.clone(), face)?)
                    .remove(0);
                attributes.detection = Some(FaceDetection {
                    count,
                    index,
                    bbox: face.bbox,
                    score: face.score,
                });
                Some(attributes)
            })
            .collect();
        if out.is_empty() {
            out.push(Attributes {
                face_found: false,
                probabilities: Default::default(),
                detection: None,
            });
        }
        out
    }
}

/// MTCNN works on 0..255 byte values; rounding undoes the /255 of `unit_rgb_planes` exactly.
fn to_bytes<B: Backend>(image: Tensor<B, 3>) -> Tensor<B, 3> {
    (image * 255.0).round()
}

/// facenet-pytorch's crop of `face`, as `[1, 3, S, S]` in [0, 1].
async fn standardised_chip<B: Backend>(
    detector: &Mtcnn<B>,
    image: Tensor<B, 3>,
    face: &Face,
) -> Result<Option<Tensor<B, 4>>, String> {
    // The crop comes standardised as facenet-pytorch's `(x − 127.5) / 128`; the heads take [0, 1].
    let chip = detector.extract_async(to_bytes(image), face).await?;
    Ok(chip.map(|chip| ((chip * 128.0 + 127.5) / 255.0).unsqueeze()))
}

impl<B: Backend> AttributeClassifier<B> for DetectedFaces<B> {
    fn name(&self) -> String {
        let detector = match self.detector {
            FaceDetector::Mtcnn(_) => "mtcnn",
            FaceDetector::YuNet(_) => "yunet",
        };
        format!("{detector}+{}", self.heads.name())
    }

    fn kind(&self) -> super::kind::ClassifierKind {
        self.heads.kind()
    }

    fn axes(&self) -> Vec<AxisSpec> {
        self.heads.axes()
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        let n = images.dims()[0];
        (0..n)
            .map(|i| {
                self.faces(images.clone().slice([i..i + 1]).squeeze_dim(0), false)
                    .remove(0)
            })
            .collect()
    }

    fn classify_each_face(&self, image: Tensor<B, 4>) -> Vec<Attributes> {
        self.faces(image.squeeze_dim(0), true)
    }
}
