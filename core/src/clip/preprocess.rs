//! Images in [0, 1] → the pixel values a CLIP vision tower takes.
//!
//! transformers' `CLIPImageProcessor` resizes the shorter side to `image_size` (bicubic), centre-crops an
//! `image_size`² square, rescales bytes by 1/255 and normalises with OpenAI's dataset statistics. Here the
//! images already are [0, 1] floats, so the order is: centre-crop the largest square ([`center_square`]),
//! resize it to `image_size`² with [`to_chip_size`] (exact area averaging when shrinking, bilinear when
//! enlarging; not bicubic, so real photos differ from the reference processor by resampling noise), then
//! `(x − mean) / std` per channel. An input already `image_size`² passes the first two steps unchanged,
//! which is what the parity tests rely on.

use burn::prelude::*;

use crate::face_attributes::to_chip_size;

/// OpenAI CLIP's per-channel (RGB) mean, `image_mean` of every CLIP processor config.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel (RGB) standard deviation, `image_std`.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// `[N, C, H, W]` → its centred `[N, C, m, m]` square, `m = min(H, W)`; the odd pixel goes to the end,
/// as in transformers' `center_crop` (`top = (H − m) / 2`, rounded down).
pub fn center_square<B: Backend>(images: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = images.dims();
    let m = h.min(w);
    let (top, left) = ((h - m) / 2, (w - m) / 2);
    images.slice([0..n, 0..c, top..top + m, left..left + m])
}

/// Images `[N, 3, H, W]` in [0, 1] → normalised pixel values `[N, 3, size, size]` (see the module doc).
pub fn images_to_pixel_values<B: Backend>(images: Tensor<B, 4>, size: usize) -> Tensor<B, 4> {
    let [_, c, _, _] = images.dims();
    assert_eq!(c, 3, "CLIP takes RGB images: [N, 3, H, W]");
    let device = images.device();
    let mean = Tensor::<B, 1>::from_floats(CLIP_MEAN.as_slice(), &device).reshape([1, 3, 1, 1]);
    let std = Tensor::<B, 1>::from_floats(CLIP_STD.as_slice(), &device).reshape([1, 3, 1, 1]);
    (to_chip_size(center_square(images), size) - mean) / std
}
