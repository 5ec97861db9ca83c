//! DeepFace's input for its attribute models (`deepface.modules.preprocessing.resize_image`, as `analyze` calls it):
//! a face crop in [0, 1] (float64 there), channels flipped to BGR, resized with OpenCV keeping its aspect ratio so
//! that the longer side is 224, then centred on a black 224×224 canvas, cast to float32. No mean is subtracted.
//!
//! The resize is OpenCV's `INTER_LINEAR` on a float image, written out: separable bilinear interpolation with
//! half-pixel centres, `src = (dst + 0.5)·(in/out) − 0.5`, coefficients in f64 (opencv-python 5.1 on a float64
//! image; with f32 coefficients, as older OpenCV kept them, the result moves by up to 5e-6), clamped at the
//! borders, and no antialiasing when shrinking. Sizes follow Python: `factor = min(224/h, 224/w)`, `(int(w·factor), int(h·factor))` truncated;
//! the padding puts `diff // 2` pixels before and the rest after.

/// DeepFace's input side.
pub const DEEPFACE_INPUT_SIZE: usize = 224;

/// The taps of one output coordinate: source index of the left/top sample and the weights of it and the next.
fn taps(dst: usize, scale: f64, src_len: usize) -> (usize, [f64; 2]) {
    let coordinate = (dst as f64 + 0.5) * scale - 0.5;
    let floor = coordinate.floor();
    let (index, fraction) = if floor < 0.0 {
        (0, 0.0)
    } else if floor as usize >= src_len - 1 {
        (src_len - 1, 0.0)
    } else {
        (floor as usize, coordinate - floor)
    };
    (index, [1.0 - fraction, fraction])
}

/// OpenCV's `cv2.resize(plane, (out_w, out_h))` (`INTER_LINEAR`) of one `h × w` plane, in f64.
fn resize_plane(plane: &[f64], (h, w): (usize, usize), (out_h, out_w): (usize, usize)) -> Vec<f64> {
    let xs: Vec<_> = (0..out_w)
        .map(|x| taps(x, w as f64 / out_w as f64, w))
        .collect();
    let ys: Vec<_> = (0..out_h)
        .map(|y| taps(y, h as f64 / out_h as f64, h))
        .collect();
    let row = |y: usize| -> Vec<f64> {
        let src = &plane[y * w..(y + 1) * w];
        xs.iter()
            .map(|&(x, [a0, a1])| src[x] * a0 + if a1 != 0.0 { src[x + 1] * a1 } else { 0.0 })
            .collect()
    };
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y, [b0, b1]) in &ys {
        let top = row(y);
        if b1 == 0.0 {
            out.extend(top.iter().map(|v| v * b0));
        } else {
            let bottom = row(y + 1);
            out.extend(top.iter().zip(&bottom).map(|(t, b)| t * b0 + b * b1));
        }
    }
    out
}

/// The resized size `(h, w)` of an `h × w` crop: the longer side becomes 224, as DeepFace computes it.
pub fn resized_size(h: usize, w: usize) -> (usize, usize) {
    let side = DEEPFACE_INPUT_SIZE as f64;
    let factor = (side / h as f64).min(side / w as f64);
    ((h as f64 * factor) as usize, (w as f64 * factor) as usize)
}

/// An RGB crop `[3, h, w]` in [0, 1] (planar) → DeepFace's network input `[3, 224, 224]`, BGR, in [0, 1].
/// Errors on an empty crop or one so thin that a side would shrink to 0 pixels (DeepFace's cv2 call fails then).
pub fn deepface_input(rgb: &[f32], h: usize, w: usize) -> Result<Vec<f32>, String> {
    if h == 0 || w == 0 || rgb.len() != 3 * h * w {
        return Err(format!(
            "a {h}×{w} face crop with {} values is not an RGB image",
            rgb.len()
        ));
    }
    let (out_h, out_w) = resized_size(h, w);
    if out_h == 0 || out_w == 0 {
        return Err(format!(
            "a {h}×{w} face crop is too thin to resize to {DEEPFACE_INPUT_SIZE} pixels"
        ));
    }
    let side = DEEPFACE_INPUT_SIZE;
    let (top, left) = ((side - out_h) / 2, (side - out_w) / 2);
    let mut out = vec![0.0f32; 3 * side * side];
    for (bgr, rgb_channel) in [2, 1, 0].into_iter().enumerate() {
        let plane: Vec<f64> = rgb[rgb_channel * h * w..(rgb_channel + 1) * h * w]
            .iter()
            .map(|v| f64::from(*v))
            .collect();
        let resized = resize_plane(&plane, (h, w), (out_h, out_w));
        for y in 0..out_h {
            let dst = bgr * side * side + (top + y) * side + left;
            for (d, v) in out[dst..dst + out_w]
                .iter_mut()
                .zip(&resized[y * out_w..(y + 1) * out_w])
            {
                *d = *v as f32;
            }
        }
    }
    Ok(out)
}
