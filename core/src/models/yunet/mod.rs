//! **YuNet** (Wu et al. 2023; libfacedetection), the face detector of the official PopAlign evaluation (DeepFace's
//! `detector_backend='yunet'`, which runs OpenCV's `FaceDetectorYN` on opencv_zoo's
//! `face_detection_yunet_2023mar.onnx`). [`net`] is the network, [`decode`] OpenCV's post-processing.
//!
//! The weights are the ONNX file's, converted once by `tools/convert_yunet.py` (popalign reads safetensors only).
//! Input: one RGB image `[3, H, W]` with values in 0..255; it is flipped to BGR (the order YuNet was trained on and
//! OpenCV feeds it) and padded with zeros on the right and bottom to multiples of 32, as `FaceDetectorYN` pads.
//! Coordinates come back in the input's pixels.

pub mod decode;
pub mod net;

use std::path::Path;

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

pub use decode::{YuNetConfig, YuNetFace};
pub use net::YuNetNet;

use crate::io::load::{self, LoadError};

pub struct YuNet<B: Backend> {
    pub net: YuNetNet<B>,
    pub config: YuNetConfig,
}

impl<B: Backend> YuNet<B> {
    /// Loads the safetensors `tools/convert_yunet.py` writes.
    pub fn load(file: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let net = load::load_weights(YuNetNet::new(device), &[file.to_path_buf()], &[])?;
        Ok(Self {
            net,
            config: YuNetConfig::default(),
        })
    }

    /// The network's predictions for one RGB image `[3, H, W]` in 0..255 (BGR, padded), and the padded size.
    pub fn predictions(&self, image: Tensor<B, 3>) -> (Vec<net::LevelOutput<B>>, usize, usize) {
        let [_, h, w] = image.dims();
        let (pad_h, pad_w) = (h.div_ceil(32) * 32, w.div_ceil(32) * 32);
        let bgr = image.flip([0]).unsqueeze::<4>();
        let padded = Tensor::zeros([1, 3, pad_h, pad_w], &bgr.device())
            .slice_assign([0..1, 0..3, 0..h, 0..w], bgr);
        (self.net.forward(padded), pad_h, pad_w)
    }

    /// The faces of one RGB image `[3, H, W]` in 0..255, best first.
    pub fn detect(&self, image: Tensor<B, 3>) -> Vec<YuNetFace> {
        let (outputs, pad_h, pad_w) = self.predictions(image);
        let host: Vec<[Vec<f32>; 4]> = outputs
            .into_iter()
            .map(|o| {
                [o.cls, o.obj, o.bbox, o.kps].map(|t| {
                    let data = t.into_data().convert::<f32>();
                    data.to_vec::<f32>().expect("converted to f32")
                })
            })
            .collect();
        let levels = std::array::from_fn(|i| decode::Level {
            cls: &host[i][0],
            obj: &host[i][1],
            bbox: &host[i][2],
            kps: &host[i][3],
        });
        decode::decode(&levels, pad_h, pad_w, &self.config)
    }

    /// The faces as DeepFace's `yunet` backend (deepface 0.0.103, `YuNetClient.detect_faces`) reports them: the
    /// image capped at 640 pixels a side ([`downscale_as_deepface`]), each box truncated to integers, its corner
    /// clamped to the image, scaled back, and returned as `[x1, y1, x2, y2]` with the score, best score first
    /// (DeepFace keeps the detector's order).
    pub fn detect_deepface(&self, image: Tensor<B, 3>) -> Vec<([f32; 4], f32)> {
        let (image, r) = downscale_as_deepface(image);
        let scale = |v: i64| r.map_or(v, |r| (v as f64 / r) as i64);
        self.detect(image)
            .iter()
            .map(|face| {
                let [x, y, w, h] = face.bbox.map(|v| v as i64);
                let (x, y) = (scale(x.max(0)), scale(y.max(0)));
                let (w, h) = (scale(w), scale(h));
                ([x, y, x + w, y + h].map(|v| v as f32), face.score)
            })
            .collect()
    }
}

/// DeepFace's cap on YuNet's input: an image over 640 pixels a side is resized by `r = 640 / longest side` to
/// `(int(h·r), int(w·r))` (bilinear on half-pixel centres, rounded to bytes: close to `cv2.resize`'s fixed point,
/// not bit-exact); returns the image and `r` if it was.
pub fn downscale_as_deepface<B: Backend>(image: Tensor<B, 3>) -> (Tensor<B, 3>, Option<f64>) {
    let [_, h, w] = image.dims();
    if h <= 640 && w <= 640 {
        return (image, None);
    }
    let r = 640.0 / h.max(w) as f64;
    let size = [(h as f64 * r) as usize, (w as f64 * r) as usize];
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
    let resized = interpolate(image.unsqueeze::<4>(), size, options).squeeze_dim::<3>(0);
    (resized.round(), Some(r))
}
