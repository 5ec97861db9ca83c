//! The face classifier a report carries (`popalign report --face-weights DIR`), run in the browser on
//! burn-wgpu: MTCNN finds the largest face and the dlib networks read its chip, as `popalign classify
//! --classifier faces` does natively, on the same decoded pixels.

use std::cell::RefCell;
use std::rc::Rc;

use base64::Engine;
use burn::backend::Wgpu;
use burn::backend::wgpu::WgpuDevice;
use burn::prelude::*;
use popalign_core::classify::detected::DetectedFaces;
use popalign_core::classify::{Attributes, MAX_SIDE, unit_rgb_planes};
use popalign_core::face::Mtcnn;
use popalign_core::face_attributes::{
    AgeBands, AgeNet, AgeNetConfig, DlibAgeGender, DlibGender, GenderNet,
};
use popalign_core::report::CarriedClassifier;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::classify::read_back;
use crate::fetch;
use crate::gpu::js_err;

enum Heads {
    Gender(DlibGender<Wgpu>),
    AgeGender(DlibAgeGender<Wgpu>),
}

pub struct FaceClassifier {
    detector: Mtcnn<Wgpu>,
    heads: Heads,
}

thread_local! {
    /// Loaded once per page: the weights are megabytes.
    static LOADED: RefCell<Option<Rc<FaceClassifier>>> = const { RefCell::new(None) };
}

impl FaceClassifier {
    /// The classifier of `carried`, loaded on first use and kept for the page's lifetime.
    pub async fn shared(carried: &CarriedClassifier) -> Result<Rc<Self>, String> {
        if let Some(loaded) = LOADED.with_borrow(Clone::clone) {
            return Ok(loaded);
        }
        let loaded = Rc::new(Self::load(carried).await?);
        LOADED.with_borrow_mut(|slot| *slot = Some(loaded.clone()));
        Ok(loaded)
    }

    async fn load(carried: &CarriedClassifier) -> Result<Self, String> {
        let device = WgpuDevice::default();
        let (mut detector, mut gender, mut age) = (None, None, None);
        for file in &carried.files {
            let bytes = weights(file).await?;
            let err = |e: popalign_core::load::LoadError| e.to_string();
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
        let mut image =
            image::load_from_memory(bytes).map_err(|e| format!("not a readable image: {e}"))?;
        if image.width().max(image.height()) > MAX_SIDE {
            image = image.resize(MAX_SIDE, MAX_SIDE, image::imageops::FilterType::Triangle);
        }
        let rgb = image.to_rgb8();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let planes = unit_rgb_planes(rgb.as_raw(), w, h);
        let device = WgpuDevice::default();
        let image = Tensor::<Wgpu, 1>::from_floats(planes.as_slice(), &device).reshape([3, h, w]);
        let Some(chip) = DetectedFaces::first_face_chip(&self.detector, image).await? else {
            return Ok(Attributes {
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

/// A carried weight file's bytes: fetched over http; opened from disk, loaded from its `<file>.js`.
async fn weights(file: &str) -> Result<Vec<u8>, String> {
    if !fetch::from_disk() {
        return fetch::bytes(file).await;
    }
    load_script(&format!("{file}.js")).await?;
    let window = gloo::utils::window();
    let table =
        js_sys::Reflect::get(&window, &"POPALIGN_WEIGHTS".into()).map_err(|e| js_err(file, e))?;
    let encoded = js_sys::Reflect::get(&table, &file.into())
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| format!("{file}.js did not define the weights of {file}"))?;
    // Free the base64 text once decoded.
    let _ = js_sys::Reflect::delete_property(table.unchecked_ref::<js_sys::Object>(), &file.into());
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("{file}.js: {e}"))
}

/// Adds `<script src=src>` to the page and waits until it has run.
async fn load_script(src: &str) -> Result<(), String> {
    let document = gloo::utils::document();
    let script: web_sys::HtmlScriptElement = document
        .create_element("script")
        .map_err(|e| js_err(src, e))?
        .dyn_into()
        .map_err(|_| format!("{src}: not a script element"))?;
    let done = js_sys::Promise::new(&mut |resolve, reject| {
        script.set_onload(Some(&resolve));
        script.set_onerror(Some(&reject));
    });
    script.set_src(src);
    document
        .body()
        .ok_or("the page has no body")?
        .append_child(&script)
        .map_err(|e| js_err(src, e))?;
    JsFuture::from(done)
        .await
        .map_err(|_| format!("{src}: the script could not be loaded"))?;
    Ok(())
}
