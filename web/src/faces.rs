//! The face classifier a report carries (`popalign report --face-weights DIR`), run in the browser on
//! burn-wgpu: MTCNN finds the largest face and the dlib networks read its chip, as `popalign classify
//! --classifier faces` does natively, on the same decoded pixels.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::Wgpu;
use burn::backend::wgpu::WgpuDevice;
use popalign_core::eval::classify::Attributes;
use popalign_core::eval::classify::detected::DetectedFaces;
use popalign_core::eval::face_attributes::{
    AgeBands, AgeNet, AgeNetConfig, DlibAgeGender, DlibGender, GenderNet,
};
use popalign_core::models::face::Mtcnn;
use popalign_core::schema::report::CarriedClassifier;

use crate::carried::{file_bytes, image_tensor, load_once};
use crate::gpu::read_back;

enum Heads {
    Gender(DlibGender<Wgpu>),
    AgeGender(DlibAgeGender<Wgpu>),
}

pub struct FaceClassifier {
    detector: Mtcnn<Wgpu>,
    heads: Heads,
}

thread_local! {
    static LOADED: RefCell<Option<Rc<FaceClassifier>>> = const { RefCell::new(None) };
}

impl FaceClassifier {
    /// The classifier of `carried`, loaded on first use.
    pub async fn shared(carried: &CarriedClassifier) -> Result<Rc<Self>, String> {
        load_once(&LOADED, Self::load(carried)).await
    }

    async fn load(carried: &CarriedClassifier) -> Result<Self, String> {
        let device = WgpuDevice::default();
        let (mut detector, mut gender, mut age) = (None, None, None);
        for file in &carried.files {
            let bytes = file_bytes(file).await?;
            let err = |e: popalign_core::io::load::LoadError| e.to_string();
            match file.rsplit('/').next().unwrap_or_default() {
                "mtcnn.safetensors" => {
                    detector = Some(Mtcnn::from_bytes(file, bytes, &device).map_err(err)?)
                }
                "gender.safetensors" => {
                    gender = Some(GenderNet::from_bytes(file, bytes, &device).map_err(err)?)
                }
                "age.safetensors" => {
                    age = Some(
                        AgeNet::from_bytes(file, bytes, AgeNetConfig::DLIB, &device)
                            .map_err(err)?,
                    )
                }
                _ => return Err(format!("{file}: not a weight file of the face classifier")),
            }
        }
        let missing = |name: &str| format!("the report's face classifier has no {name}");
        let detector = detector.ok_or_else(|| missing("mtcnn.safetensors"))?;
        let gender = gender.ok_or_else(|| missing("gender.safetensors"))?;
        let heads = match age {
            Some(age) => Heads::AgeGender(DlibAgeGender {
                gender,
                age,
                bands: AgeBands::default(),
            }),
            None => Heads::Gender(DlibGender { gender }),
        };
        Ok(Self { detector, heads })
    }

    /// An image file's bytes → the largest face's attributes, or `face_found = false`.
    pub async fn classify(&self, bytes: &[u8]) -> Result<Attributes, String> {
        let image = image_tensor(bytes)?;
        let Some(chip) = DetectedFaces::first_face_chip(&self.detector, image).await? else {
            return Ok(Attributes {
                detection: None,
                face_found: false,
                probabilities: Default::default(),
            });
        };
        let first = match &self.heads {
            Heads::Gender(heads) => {
                DlibGender::<Wgpu>::attributes(read_back(heads.probability_tensor(chip)).await?)
                    .pop()
            }
            Heads::AgeGender(heads) => {
                let (gender, age) = heads.probability_tensors(chip);
                let (gender, age) = (read_back(gender).await?, read_back(age).await?);
                heads.readings(gender, age).first().map(|r| r.attributes())
            }
        };
        first.ok_or_else(|| "the face classifier returned nothing".to_string())
    }
}
