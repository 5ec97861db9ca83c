//! The face crop facenet-pytorch returns (`MTCNN.__call__` → `extract_face`, then
//! `fixed_image_standardization`), for the documented input, a PIL image:
//!
//! 1. the box grows by `margin` output pixels (`margin·(x2 − x1)/(size − margin)` in image pixels, half on
//!    each side), is clipped to the image and truncated to integers: `int(max(x1 − m/2, 0))`,
//!    `int(min(x2 + m/2, W))`, in f32 as numpy computes it;
//! 2. `img.crop(box).resize((size, size), Image.BILINEAR)`: Pillow's separable triangle filter, widened by
//!    the scale factor when shrinking (so it antialiases), on 8-bit pixels with 22-bit fixed-point
//!    coefficients, horizontal pass first, each pass rounded and clipped to 0..255. Reproduced here bit
//!    for bit (Pillow 13's `Resample.c`: `precompute_coeffs`, `normalize_coeffs_8bpc`,
//!    `ImagingResampleHorizontal_8bpc` / `Vertical`);
//! 3. `(x − 127.5) / 128`, so values lie in [−0.996, 0.996].
//!
//! There is no rotation: facenet-pytorch's "aligned" crop is the square MTCNN box. (For numpy or tensor
//! inputs facenet-pytorch resizes with OpenCV `INTER_AREA` or torch `area` instead; those are not
//! reproduced.) Pixels are read as 8-bit values: fractional inputs are rounded.

/// Pillow's `PRECISION_BITS` for 8-bit images: `32 − 8 − 2`.
const PRECISION_BITS: u32 = 22;

/// The integer crop box `[x0, y0, x1, y1]` (x1, y1 exclusive) that `extract_face` cuts from a
/// `width`×`height` image, or `None` where it is empty (Pillow would refuse to resize it).
pub fn crop_box(
    bbox: [f32; 4],
    image_size: usize,
    margin: usize,
    width: usize,
    height: usize,
) -> Option<[usize; 4]> {
    let (size, margin) = (image_size as f32, margin as f32);
    let mx = margin * (bbox[2] - bbox[0]) / (size - margin);
    let my = margin * (bbox[3] - bbox[1]) / (size - margin);
    // Python's int() truncates toward zero; max(·, 0) makes the first two non-negative.
    let x0 = (bbox[0] - mx / 2.0).max(0.0).trunc();
    let y0 = (bbox[1] - my / 2.0).max(0.0).trunc();
    let x1 = (bbox[2] + mx / 2.0).min(width as f32).trunc();
    let y1 = (bbox[3] + my / 2.0).min(height as f32).trunc();
    if !(x1 > x0 && y1 > y0) {
        return None;
    }
    Some([x0 as usize, y0 as usize, x1 as usize, y1 as usize])
}

/// The standardised `[3, image_size, image_size]` face crop (row-major planes) of `planes`, an RGB image
/// `[3, height, width]` with values in 0..255, or `None` when the box leaves nothing to crop.
pub fn extract_face(
    planes: &[f32],
    height: usize,
    width: usize,
    bbox: [f32; 4],
    image_size: usize,
    margin: usize,
) -> Option<Vec<f32>> {
    assert_eq!(
        planes.len(),
        3 * height * width,
        "expected [3, H, W] planes"
    );
    let [x0, y0, x1, y1] = crop_box(bbox, image_size, margin, width, height)?;
    let (ch, cw) = (y1 - y0, x1 - x0);
    let mut crop = Vec::with_capacity(3 * ch * cw);
    for c in 0..3 {
        for y in y0..y1 {
            let row = &planes[(c * height + y) * width..][x0..x1];
            crop.extend(row.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    let resized = resize_bilinear(&crop, 3, ch, cw, image_size, image_size);
    Some(
        resized
            .into_iter()
            .map(|v| (f32::from(v) - 127.5) / 128.0)
            .collect(),
    )
}

/// `Image.resize((out_w, out_h), Image.BILINEAR)` of an 8-bit image stored as `channels` planes of
/// `height`×`width`.
pub fn resize_bilinear(
    src: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    assert_eq!(src.len(), channels * height * width);
    let mut plane = src.to_vec();
    let (mut h, mut w) = (height, width);
    // Pillow skips a pass whose size does not change.
    if out_w != w {
        let kernel = Kernel::new(w, out_w);
        let mut out = vec![0u8; channels * h * out_w];
        for (src_row, dst_row) in plane.chunks_exact(w).zip(out.chunks_exact_mut(out_w)) {
            for (x, dst) in dst_row.iter_mut().enumerate() {
                *dst = kernel.apply(x, |i| src_row[i]);
            }
        }
        plane = out;
        w = out_w;
    }
    if out_h != h {
        let kernel = Kernel::new(h, out_h);
        let mut out = vec![0u8; channels * out_h * w];
        for (src_plane, dst_plane) in plane
            .chunks_exact(h * w)
            .zip(out.chunks_exact_mut(out_h * w))
        {
            for (y, dst_row) in dst_plane.chunks_exact_mut(w).enumerate() {
                for (x, dst) in dst_row.iter_mut().enumerate() {
                    *dst = kernel.apply(y, |i| src_plane[i * w + x]);
                }
            }
        }
        plane = out;
        h = out_h;
    }
    debug_assert_eq!(plane.len(), channels * h * w);
    plane
}

/// Per output index: the first input index and the fixed-point weights of the inputs it reads.
struct Kernel {
    first: Vec<usize>,
    weights: Vec<Vec<i64>>,
}

impl Kernel {
    /// Pillow's `precompute_coeffs` with the bilinear (triangle) filter, support 1, then
    /// `normalize_coeffs_8bpc`. All in f64 as in C.
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale;
        let ss = 1.0 / filterscale;
        let triangle = |x: f64| {
            let x = x.abs();
            if x < 1.0 { 1.0 - x } else { 0.0 }
        };
        let mut first = Vec::with_capacity(out_size);
        let mut weights = Vec::with_capacity(out_size);
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, then the bounds are clipped.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let raw: Vec<f64> = (xmin..xmax)
                .map(|x| triangle((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = raw.iter().fold(0.0, |acc, w| acc + w);
            let fixed = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    // (int)(±0.5 + x): round half away from zero, by truncation.
                    (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i64
                })
                .collect();
            first.push(xmin.max(0) as usize);
            weights.push(fixed);
        }
        Self { first, weights }
    }

    /// One output value: the rounded fixed-point sum, clipped to 0..255 (Pillow's `clip8`).
    fn apply(&self, out_index: usize, input: impl Fn(usize) -> u8) -> u8 {
        let start = self.first[out_index];
        let sum = self.weights[out_index]
            .iter()
            .enumerate()
            .fold(1i64 << (PRECISION_BITS - 1), |acc, (i, &k)| {
                acc + i64::from(input(start + i)) * k
            });
        (sum >> PRECISION_BITS).clamp(0, 255) as u8
    }
}
