//! Face detection with MTCNN, ported from facenet-pytorch 2.6.0 (`MTCNN(keep_all=True)`), with its real
//! P/R/O-Net weights (MIT, shipped in the facenet-pytorch wheel; `fixtures/mtcnn/mtcnn.safetensors`).
//!
//! Input: one RGB image as a `[3, H, W]` float tensor with **values in 0..255** (what facenet-pytorch
//! gets from a PIL image; [`rgb8_planes`] builds it from 8-bit pixels; a `[1, H, W]` grey image is
//! repeated into R, G and B, as PIL's `convert("RGB")` does). Output: the faces in facenet-pytorch's
//! order (largest box first by default), each with its box `[x1, y1, x2, y2]` in pixels, probability
//! and five landmarks (left eye, right eye, nose, left and right mouth corners, as `[x, y]`).
//!
//! The networks run as burn tensor ops on any backend ([`pnet`], [`rnet`], [`onet`]); the image
//! pyramid and the crops are burn `adaptive_avg_pool2d` (= torch `interpolate(mode="area")`); the box
//! bookkeeping between stages ([`detect`], [`nms`]) runs on the host in f32, following facenet-pytorch
//! operation by operation, because its floors and truncations decide which pixels the next stage sees.
//! Each stage reads its results back before the next; [`Mtcnn::detect_async`] does it asynchronously,
//! as burn-wgpu in the browser requires, and [`Mtcnn::detect`] blocks on that.
//!
//! Checkpoint keys are `pnet.*`, `rnet.*`, `onet.*` followed by facenet-pytorch's own state-dict keys
//! (`conv1.weight`, `prelu1.weight`, `dense4.weight`, …); the module fields carry the same names, so
//! loading needs no key remapping.

pub mod detect;
pub mod extract;
pub mod nms;
pub mod onet;
pub mod pnet;
pub mod prelu;
pub mod rnet;

use std::path::Path;

use burn::prelude::*;

pub use detect::StageCounts;
pub use onet::ONet;
pub use pnet::PNet;
pub use rnet::RNet;

use crate::io::load::{self, LoadError};

/// The file name [`Mtcnn::load`] looks for when given a folder.
pub const WEIGHTS_FILE: &str = "mtcnn.safetensors";

/// facenet-pytorch's `MTCNN(...)` arguments that change detection or extraction; the defaults are its
/// defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtcnnConfig {
    /// Smallest face (in pixels) the pyramid looks for: its first level scales the image by 12 / this.
    pub min_face_size: f64,
    /// Probability thresholds of PNet (kept if `>=`), RNet and ONet (kept if `>`).
    pub thresholds: [f64; 3],
    /// Scale step between pyramid levels, in (0, 1).
    pub factor: f64,
    /// Order the faces by box area, largest first (facenet-pytorch's default); otherwise by decreasing
    /// probability.
    pub select_largest: bool,
    /// Side of the square crop [`Mtcnn::extract`] returns.
    pub image_size: usize,
    /// Margin added around the box by [`Mtcnn::extract`], in output pixels.
    pub margin: usize,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        Self {
            min_face_size: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            factor: 0.709,
            select_largest: true,
            image_size: 160,
            margin: 0,
        }
    }
}

impl MtcnnConfig {
    /// Rejects settings that would loop forever or mean nothing.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.min_face_size.is_finite() && self.min_face_size > 0.0) {
            return Err(format!(
                "min_face_size must be positive, got {}",
                self.min_face_size
            ));
        }
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(format!("factor must lie in (0, 1), got {}", self.factor));
        }
        if self.thresholds.iter().any(|t| !t.is_finite()) {
            return Err(format!(
                "thresholds must be finite, got {:?}",
                self.thresholds
            ));
        }
        if self.image_size == 0 || self.margin >= self.image_size {
            return Err(format!(
                "need 0 <= margin < image_size, got margin {} and image_size {}",
                self.margin, self.image_size
            ));
        }
        Ok(())
    }
}

/// One detected face. Coordinates are pixels of the input image (x right, y down), as facenet-pytorch
/// returns them: boxes may reach past the image border.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// ONet's face probability.
    pub probability: f32,
    /// `[x, y]` of the left eye, right eye, nose, left and right mouth corners (the subject's left is
    /// the image's left here, as in facenet-pytorch).
    pub landmarks: [[f32; 2]; 5],
}

/// The three networks, as one module whose keys are those of `mtcnn.safetensors`.
#[derive(Module, Debug)]
pub struct MtcnnNets<B: Backend> {
    pub pnet: PNet<B>,
    pub rnet: RNet<B>,
    pub onet: ONet<B>,
}

impl<B: Backend> MtcnnNets<B> {
    /// Randomly initialised networks (the shapes [`Mtcnn::load`] expects).
    pub fn new(device: &B::Device) -> Self {
        Self {
            pnet: PNet::new(device),
            rnet: RNet::new(device),
            onet: ONet::new(device),
        }
    }
}

/// The detector: the networks and the settings.
#[derive(Debug)]
pub struct Mtcnn<B: Backend> {
    pub nets: MtcnnNets<B>,
    pub config: MtcnnConfig,
}

impl<B: Backend> Mtcnn<B> {
    /// Loads `path` (a safetensors file, or a folder holding [`WEIGHTS_FILE`]) with the default settings.
    /// Every tensor must be present with its shape; the error names the file, the key and the shapes.
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let file = if path.is_dir() {
            path.join(WEIGHTS_FILE)
        } else {
            path.to_path_buf()
        };
        let nets = load::load_weights(MtcnnNets::new(device), &[file], &[])?;
        Ok(Self {
            nets,
            config: MtcnnConfig::default(),
        })
    }

    /// [`Self::load`] from the bytes of `mtcnn.safetensors` (the browser); `name` stands for the file in
    /// errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>, device: &B::Device) -> Result<Self, LoadError> {
        Ok(Self {
            nets: load::load_weights_from_bytes(MtcnnNets::new(device), name, bytes)?,
            config: MtcnnConfig::default(),
        })
    }

    /// The same networks with other settings.
    pub fn with_config(self, config: MtcnnConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(Self { config, ..self })
    }

    /// The faces in `image` (`[3, H, W]` or `[1, H, W]`, values 0..255), ordered as facenet-pytorch
    /// orders them. An image whose shorter side is under `min_face_size` gives no face (the pyramid
    /// has no level).
    pub fn detect(&self, image: Tensor<B, 3>) -> Vec<Face> {
        self.detect_counted(image).0
    }

    /// [`Self::detect`], with how many candidates reached and passed RNet and ONet.
    pub fn detect_counted(&self, image: Tensor<B, 3>) -> (Vec<Face>, StageCounts) {
        futures_lite::future::block_on(detect::detect(&self.nets, &self.config, image))
            .unwrap_or_else(|e| panic!("MTCNN: {e}"))
    }

    /// [`Self::detect`] reading each stage's results back asynchronously: what a backend that cannot
    /// block (burn-wgpu in the browser) needs.
    pub async fn detect_async(&self, image: Tensor<B, 3>) -> Result<Vec<Face>, String> {
        Ok(detect::detect(&self.nets, &self.config, image).await?.0)
    }

    /// The standardised `[3, image_size, image_size]` crop of `face` (see [`extract`]), or `None` when
    /// the box holds no pixel of the image. Reads the image back from the device.
    pub fn extract(&self, image: Tensor<B, 3>, face: &Face) -> Option<Tensor<B, 3>> {
        futures_lite::future::block_on(self.extract_async(image, face))
            .unwrap_or_else(|e| panic!("MTCNN: {e}"))
    }

    /// [`Self::extract`] reading the image back asynchronously (see [`Self::detect_async`]).
    pub async fn extract_async(
        &self,
        image: Tensor<B, 3>,
        face: &Face,
    ) -> Result<Option<Tensor<B, 3>>, String> {
        let device = image.device();
        let [_, h, w] = image.dims();
        if h == 0 || w == 0 {
            return Ok(None);
        }
        let planes = detect::host(to_rgb(image)).await?;
        let size = self.config.image_size;
        let crop = extract::extract_face(&planes, h, w, face.bbox, size, self.config.margin);
        Ok(crop.map(|crop| {
            Tensor::<B, 1>::from_floats(crop.as_slice(), &device).reshape([3, size, size])
        }))
    }
}

/// Interleaved 8-bit RGB (`image::RgbImage`'s buffer) → `[3, H, W]` planes with values 0..255, the
/// detector's input. (`classify::unit_rgb_planes` gives the same in [0, 1]; multiplying that by 255 is
/// not exact in f32, so use this one.)
pub fn rgb8_planes(rgb: &[u8], width: usize, height: usize) -> Vec<f32> {
    let plane = width * height;
    let mut data = vec![0.0; 3 * plane];
    for (i, pixel) in rgb.chunks_exact(3).take(plane).enumerate() {
        for (c, value) in pixel.iter().enumerate() {
            data[c * plane + i] = f32::from(*value);
        }
    }
    data
}

/// `[1, H, W]` → `[3, H, W]` by repetition; `[3, H, W]` as is.
pub(crate) fn to_rgb<B: Backend>(image: Tensor<B, 3>) -> Tensor<B, 3> {
    match image.dims()[0] {
        3 => image,
        1 => image.repeat_dim(0, 3),
        c => panic!("MTCNN takes [3, H, W] (RGB) or [1, H, W] (grey) images, got {c} channels"),
    }
}
