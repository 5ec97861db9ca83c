//! Images → a CLIP tower's `pixel_values`, as the reference processors compute them.
//!
//! Both references resize the shorter side to `size` (the longer to `⌊size · long / short⌋`) with antialiased
//! bicubic ([`super::resample`]), centre-crop, scale bytes by 1/255 and normalise per channel:
//!
//! | reference | bytes resized by | crop offset `(H − h) / 2` |
//! |---|---|---|
//! | transformers 5 `CLIPImageProcessor` (torchvision backend, the default) | torch (`int16` weights) | rounded down |
//! | transformers `CLIPImageProcessorPil` (transformers 4's default) | Pillow | rounded down |
//! | open_clip `image_transform(is_train=False)` (HPSv2) | Pillow | rounded half to even |
//!
//! `preprocessor_config.json` does not say which transformers backend produced it (both write the same file),
//! so [`ImageProcessor::from_preprocessor_config`] takes it as an argument.
//!
//! Two paths share one configuration: [`ImageProcessor::pixel_values_rgb8`] reproduces the references byte for
//! byte on decoded 8-bit images (evaluation of saved files), and [`ImageProcessor::pixel_values`] applies the same
//! resampling weights as matrices on float tensors, differentiable and without byte rounding (AlignProp's rewards,
//! images straight from the VAE).

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use serde::Deserialize;

use super::resample::{BytePrecision, Filter, resample_matrix, resize_rgb8};
use crate::io::load::{self, LoadError};

/// OpenAI CLIP's per-channel (RGB) mean, `image_mean` of every CLIP processor config.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel (RGB) standard deviation, `image_std`.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How the image is brought to the tower's size before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// The shorter side becomes this, the aspect ratio is kept.
    ShortestEdge(usize),
    /// Both sides are set (`size: {height, width}`, open_clip's `squash`).
    Exact { height: usize, width: usize },
}

/// How an odd margin is split by the centre crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropRounding {
    /// transformers: `int((H − h) / 2)`.
    Down,
    /// torchvision's `CenterCrop` (open_clip): `round((H − h) / 2)`, Python's half-to-even.
    HalfEven,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    pub resize: Option<Resize>,
    /// `(height, width)` of the centre crop; `None` keeps the resized image.
    pub crop: Option<(usize, usize)>,
    pub filter: Filter,
    pub precision: BytePrecision,
    pub crop_rounding: CropRounding,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ImageProcessor {
    /// transformers' `CLIPImageProcessor` defaults at `size` (shortest edge and square crop).
    pub fn openai_clip(size: usize) -> Self {
        Self {
            resize: Some(Resize::ShortestEdge(size)),
            crop: Some((size, size)),
            filter: Filter::Bicubic,
            precision: BytePrecision::TorchInt16,
            crop_rounding: CropRounding::Down,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }

    /// Reads transformers' `preprocessor_config.json`; `precision` names the backend that loads it (see the
    /// module doc). Settings the processor cannot reproduce are refused with the field's name.
    pub fn from_preprocessor_config(
        path: &Path,
        precision: BytePrecision,
    ) -> Result<Self, LoadError> {
        let config: PreprocessorConfig = load::read_config(path)?;
        let unsupported = |message: String| LoadError::Unsupported {
            path: path.to_path_buf(),
            message,
        };
        let filter = Filter::from_pil_code(config.resample).ok_or_else(|| {
            unsupported(format!(
                "resample {} (supported: 2 bilinear, 3 bicubic)",
                config.resample
            ))
        })?;
        if config.do_rescale && (config.rescale_factor * 255.0 - 1.0).abs() > 1e-6 {
            return Err(unsupported(format!(
                "rescale_factor {} (supported: 1/255)",
                config.rescale_factor
            )));
        }
        let resize = match config.do_resize {
            false => None,
            true => Some(
                config
                    .size
                    .resize()
                    .map_err(|m| unsupported(format!("size: {m}")))?,
            ),
        };
        let crop = match (config.do_center_crop, config.crop_size) {
            (false, _) => None,
            (true, None) => return Err(unsupported("do_center_crop without crop_size".into())),
            (true, Some(size)) => Some(
                size.crop()
                    .map_err(|m| unsupported(format!("crop_size: {m}")))?,
            ),
        };
        let (mean, std) = match config.do_normalize {
            true => (
                config.image_mean.unwrap_or(CLIP_MEAN),
                config.image_std.unwrap_or(CLIP_STD),
            ),
            false => ([0.0; 3], [1.0; 3]),
        };
        Ok(Self {
            resize,
            crop,
            filter,
            precision,
            crop_rounding: CropRounding::Down,
            mean,
            std,
        })
    }

    /// open_clip's evaluation transform for a tower of `image_size`, from `open_clip_config.json`'s
    /// `preprocess_cfg`.
    pub fn open_clip(
        image_size: usize,
        config: &OpenClipPreprocess,
        path: &Path,
    ) -> Result<Self, LoadError> {
        let unsupported = |message: String| LoadError::Unsupported {
            path: path.to_path_buf(),
            message,
        };
        let filter = match config.interpolation.as_str() {
            "bicubic" => Filter::Bicubic,
            "bilinear" => Filter::Bilinear,
            other => {
                return Err(unsupported(format!(
                    "preprocess_cfg.interpolation `{other}`"
                )));
            }
        };
        let resize = match config.resize_mode.as_str() {
            "shortest" => Resize::ShortestEdge(image_size),
            "squash" => Resize::Exact {
                height: image_size,
                width: image_size,
            },
            other => return Err(unsupported(format!("preprocess_cfg.resize_mode `{other}`"))),
        };
        Ok(Self {
            resize: Some(resize),
            crop: Some((image_size, image_size)),
            filter,
            precision: BytePrecision::Pillow,
            crop_rounding: CropRounding::HalfEven,
            mean: config.mean,
            std: config.std,
        })
    }

    /// `(width, height)` after the resize step.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        match self.resize {
            None => (width, height),
            Some(Resize::Exact { height, width }) => (width, height),
            Some(Resize::ShortestEdge(size)) => {
                let (short, long) = (width.min(height), width.max(height));
                // Python's `int(size * long / short)`: a float quotient truncated.
                let long = (size as f64 * long as f64 / short as f64) as usize;
                if width <= height {
                    (size, long)
                } else {
                    (long, size)
                }
            }
        }
    }

    /// The crop window `(top, left, height, width)` inside a resized `width × height` image.
    pub fn crop_window(
        &self,
        width: usize,
        height: usize,
    ) -> Result<(usize, usize, usize, usize), String> {
        let Some((crop_h, crop_w)) = self.crop else {
            return Ok((0, 0, height, width));
        };
        if crop_h > height || crop_w > width {
            return Err(format!(
                "the {crop_w}×{crop_h} crop is larger than the {width}×{height} resized image (padding is not supported)"
            ));
        }
        let offset = |margin: usize| match self.crop_rounding {
            CropRounding::Down => margin / 2,
            // Half to even: an odd margin m gives m/2 = k + 0.5, rounded to whichever of k, k + 1 is even.
            CropRounding::HalfEven => margin / 2 + (margin % 2) * ((margin / 2) % 2),
        };
        Ok((
            offset(height - crop_h),
            offset(width - crop_w),
            crop_h,
            crop_w,
        ))
    }

    /// Interleaved 8-bit RGB `width × height` → `[3, h, w]` pixel values (channel-major), exactly as the reference.
    pub fn pixel_values_rgb8(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Vec<f32>, String> {
        let (rw, rh) = self.resized_size(width, height);
        let resized = resize_rgb8(rgb, (width, height), (rw, rh), self.filter, self.precision);
        let (top, left, ch, cw) = self.crop_window(rw, rh)?;
        let mut out = vec![0.0; 3 * ch * cw];
        for c in 0..3 {
            for y in 0..ch {
                for x in 0..cw {
                    let byte = resized[((top + y) * rw + left + x) * 3 + c];
                    out[(c * ch + y) * cw + x] =
                        (f32::from(byte) / 255.0 - self.mean[c]) / self.std[c];
                }
            }
        }
        Ok(out)
    }

    /// Decoded images (interleaved 8-bit RGB with their sizes) → `[N, 3, h, w]` pixel values, each exactly as the
    /// reference; they must share one output size (true whenever the processor crops).
    pub fn batch_rgb8<B: Backend>(
        &self,
        images: &[(&[u8], usize, usize)],
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, String> {
        let mut data = Vec::new();
        let mut size = None;
        for &(rgb, width, height) in images {
            let (rw, rh) = self.resized_size(width, height);
            let (_, _, h, w) = self.crop_window(rw, rh)?;
            if *size.get_or_insert((h, w)) != (h, w) {
                return Err("images of different sizes and no crop: cannot batch them".into());
            }
            data.extend(self.pixel_values_rgb8(rgb, width, height)?);
        }
        let (h, w) = size.ok_or("no images")?;
        Ok(Tensor::from_data(
            TensorData::new(data, [images.len(), 3, h, w]),
            device,
        ))
    }

    /// Images `[N, 3, H, W]` in [0, 1] → `[N, 3, h, w]` pixel values: the same resampling weights in floating point
    /// (differentiable, no byte rounding), then the crop and the normalisation.
    pub fn pixel_values<B: Backend>(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 4>, String> {
        let [n, c, h, w] = images.dims();
        if c != 3 {
            return Err(format!(
                "CLIP takes RGB images [N, 3, H, W], got {c} channels"
            ));
        }
        let (rw, rh) = self.resized_size(w, h);
        let (top, left, ch, cw) = self.crop_window(rw, rh)?;
        let device = images.device();
        // Only the rows of the resampling matrices that land inside the crop are computed.
        let along_width = self.matrix::<B>(w, rw, left..left + cw, &device);
        let along_height = self.matrix::<B>(h, rh, top..top + ch, &device);
        let x = images
            .reshape([n * c * h, w])
            .matmul(along_width.transpose());
        let x = x
            .reshape([n * c, h, cw])
            .swap_dims(1, 2)
            .reshape([n * c * cw, h]);
        let x = x
            .matmul(along_height.transpose())
            .reshape([n, c, cw, ch])
            .swap_dims(2, 3);
        Ok((x - channel::<B>(self.mean, &device)) / channel::<B>(self.std, &device))
    }

    /// Rows `keep` of the `[n_out, n_in]` resampling matrix as a tensor.
    fn matrix<B: Backend>(
        &self,
        n_in: usize,
        n_out: usize,
        keep: std::ops::Range<usize>,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        let rows = keep.len();
        let full = resample_matrix(n_in, n_out, self.filter);
        let kept = full[keep.start * n_in..keep.end * n_in].to_vec();
        Tensor::from_data(TensorData::new(kept, [rows, n_in]), device)
    }
}

fn channel<B: Backend>(values: [f32; 3], device: &B::Device) -> Tensor<B, 4> {
    Tensor::<B, 1>::from_floats(values.as_slice(), device).reshape([1, 3, 1, 1])
}

/// Images `[N, 3, H, W]` in [0, 1] → pixel values for a tower of `size` with transformers' CLIP defaults
/// ([`ImageProcessor::openai_clip`], the differentiable path).
pub fn images_to_pixel_values<B: Backend>(images: Tensor<B, 4>, size: usize) -> Tensor<B, 4> {
    ImageProcessor::openai_clip(size)
        .pixel_values(images)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `open_clip_config.json`'s `preprocess_cfg` (open_clip's `PreprocessCfg` defaults where a key is absent).
#[derive(Debug, Clone, Deserialize)]
pub struct OpenClipPreprocess {
    #[serde(default = "clip_mean")]
    pub mean: [f32; 3],
    #[serde(default = "clip_std")]
    pub std: [f32; 3],
    #[serde(default = "bicubic")]
    pub interpolation: String,
    #[serde(default = "shortest")]
    pub resize_mode: String,
}

impl Default for OpenClipPreprocess {
    fn default() -> Self {
        Self {
            mean: CLIP_MEAN,
            std: CLIP_STD,
            interpolation: bicubic(),
            resize_mode: shortest(),
        }
    }
}

fn clip_mean() -> [f32; 3] {
    CLIP_MEAN
}
fn clip_std() -> [f32; 3] {
    CLIP_STD
}
fn bicubic() -> String {
    "bicubic".into()
}
fn shortest() -> String {
    "shortest".into()
}
fn yes() -> bool {
    true
}
fn pil_bicubic() -> u32 {
    3
}
fn one_over_255() -> f64 {
    1.0 / 255.0
}

/// The fields of transformers' `preprocessor_config.json` that decide the pixels.
#[derive(Debug, Deserialize)]
struct PreprocessorConfig {
    size: SizeField,
    #[serde(default)]
    crop_size: Option<SizeField>,
    #[serde(default = "yes")]
    do_resize: bool,
    #[serde(default = "yes")]
    do_center_crop: bool,
    #[serde(default = "yes")]
    do_rescale: bool,
    #[serde(default = "yes")]
    do_normalize: bool,
    #[serde(default = "pil_bicubic")]
    resample: u32,
    #[serde(default = "one_over_255")]
    rescale_factor: f64,
    #[serde(default)]
    image_mean: Option<[f32; 3]>,
    #[serde(default)]
    image_std: Option<[f32; 3]>,
}

/// `size` / `crop_size`: a bare number (older configs) or a map such as `{"shortest_edge": 224}` or
/// `{"height": 224, "width": 224}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeField {
    Number(usize),
    Map(BTreeMap<String, usize>),
}

impl SizeField {
    fn resize(&self) -> Result<Resize, String> {
        match self {
            // transformers reads a bare `size` of CLIP as the shortest edge (`default_to_square=False`).
            Self::Number(n) => Ok(Resize::ShortestEdge(*n)),
            Self::Map(map) => match (
                map.get("shortest_edge"),
                map.get("height"),
                map.get("width"),
            ) {
                (Some(n), None, None) => Ok(Resize::ShortestEdge(*n)),
                (None, Some(&height), Some(&width)) => Ok(Resize::Exact { height, width }),
                _ => Err(format!(
                    "{map:?} (supported: shortest_edge, or height and width)"
                )),
            },
        }
    }

    fn crop(&self) -> Result<(usize, usize), String> {
        match self {
            Self::Number(n) => Ok((*n, *n)),
            Self::Map(map) => match (map.get("height"), map.get("width")) {
                (Some(&h), Some(&w)) => Ok((h, w)),
                _ => Err(format!("{map:?} (expected height and width)")),
            },
        }
    }
}
