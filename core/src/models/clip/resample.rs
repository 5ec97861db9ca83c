//! Antialiased separable resampling exactly as the reference image processors do it.
//!
//! Pillow's `Image.resize` (open_clip's transforms, transformers' PIL backend) and torch's
//! `interpolate(antialias=True)` on `uint8` (transformers 5's default torchvision backend) share one algorithm:
//! for output position `i` of a pass from `n_in` to `n_out` samples, with `scale = n_in / n_out`,
//! `s = max(scale, 1)` (the filter is stretched only when shrinking) and support `r = R · s` (`R` = 2 for bicubic,
//! 1 for bilinear),
//!
//! ```text
//! centre = (i + 0.5) · scale,  first = max(⌊centre − r + 0.5⌋, 0),  last = min(⌊centre + r + 0.5⌋, n_in)
//! w_j    = f((j − centre + 0.5) / s) / Σ_j f(…)          for j in first..last
//! ```
//!
//! with Keys' cubic at `a = −0.5` or the triangle as `f`. The image is resampled along the width, stored as
//! bytes, then along the height. On bytes the weights are fixed-point integers, and the two implementations
//! differ only in their precision, which moves about 1 % of the bytes by one or two levels:
//!
//! - **Pillow**: 22 fractional bits (`PRECISION_BITS = 32 − 8 − 2`).
//! - **torch**: the most bits for which the largest weight of the pass still fits an `int16`.
//!
//! Each sum starts at half a unit, is shifted right (rounding towards −∞) and clamped to 0..=255.
//! [`resample_matrix`] gives the same weights as a dense matrix in floating point for the differentiable path.

/// The resampling filter (Pillow's `resample` codes 2 and 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Bilinear,
    Bicubic,
}

/// Whose fixed-point weights the byte path reproduces (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytePrecision {
    Pillow,
    TorchInt16,
}

impl Filter {
    /// Pillow's integer code (`PIL.Image.Resampling`), as `preprocessor_config.json` stores it.
    pub fn from_pil_code(code: u32) -> Option<Self> {
        match code {
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bilinear => (1.0 - x).max(0.0),
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// The input window of one output sample and its normalised weights.
#[derive(Debug, Clone)]
pub struct Taps {
    pub first: usize,
    pub weights: Vec<f64>,
}

/// The taps of every output sample of a pass from `n_in` to `n_out` samples.
pub fn taps(n_in: usize, n_out: usize, filter: Filter) -> Vec<Taps> {
    let scale = n_in as f64 / n_out as f64;
    let stretch = scale.max(1.0);
    let support = filter.support() * stretch;
    (0..n_out)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            // Truncation towards zero, as the C code's `(int)` casts.
            let first = ((centre - support + 0.5) as i64).max(0) as usize;
            let last = ((centre + support + 0.5) as i64).min(n_in as i64) as usize;
            let mut weights: Vec<f64> = (first..last)
                .map(|j| filter.weight((j as f64 - centre + 0.5) / stretch))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            Taps { first, weights }
        })
        .collect()
}

/// The fractional bits of the fixed-point weights of one pass.
fn precision_bits(taps: &[Taps], precision: BytePrecision) -> u32 {
    match precision {
        BytePrecision::Pillow => 22,
        BytePrecision::TorchInt16 => {
            let largest = taps
                .iter()
                .flat_map(|t| t.weights.iter().copied())
                .fold(0.0, f64::max);
            (0..22)
                .find(|&bits| (0.5 + largest * f64::from(1u32 << (bits + 1))) as i64 >= 1 << 15)
                .unwrap_or(22)
        }
    }
}

/// A weight as the fixed-point integer both C implementations round it to (half away from zero).
fn fixed_point(weight: f64, bits: u32) -> i64 {
    let v = weight * f64::from(1u32 << bits);
    if v < 0.0 {
        (v - 0.5) as i64
    } else {
        (v + 0.5) as i64
    }
}

/// The taps of one pass with their fixed-point weights.
struct BytePass<'a> {
    taps: &'a [Taps],
    fixed: Vec<Vec<i64>>,
    bits: u32,
}

impl<'a> BytePass<'a> {
    fn new(taps: &'a [Taps], precision: BytePrecision) -> Self {
        let bits = precision_bits(taps, precision);
        let fixed = taps
            .iter()
            .map(|t| t.weights.iter().map(|&w| fixed_point(w, bits)).collect())
            .collect();
        Self { taps, fixed, bits }
    }

    /// The output byte at output position `i`, reading input sample `j` through `at(j)`.
    fn sample(&self, i: usize, at: impl Fn(usize) -> u8) -> u8 {
        let mut sum: i64 = 1 << (self.bits - 1);
        for (k, weight) in self.fixed[i].iter().enumerate() {
            sum += i64::from(at(self.taps[i].first + k)) * weight;
        }
        (sum >> self.bits).clamp(0, 255) as u8
    }
}

/// Interleaved RGB bytes `height × width` → `new_height × new_width`, byte for byte as the reference named by
/// `precision` resizes them (width first, then height; a pass whose size does not change is skipped).
pub fn resize_rgb8(
    rgb: &[u8],
    (width, height): (usize, usize),
    (new_width, new_height): (usize, usize),
    filter: Filter,
    precision: BytePrecision,
) -> Vec<u8> {
    assert_eq!(
        rgb.len(),
        width * height * 3,
        "RGB bytes do not fit {width}×{height}"
    );
    let rows = resample_axis(rgb, [height, width, 3], new_width, filter, precision);
    resample_axis(
        &rows,
        [1, height, new_width * 3],
        new_height,
        filter,
        precision,
    )
}

/// Resamples the middle axis of bytes laid out `[outer][n_in][inner]` to `n_out` samples: the width of an RGB image
/// is `[height][width][3]`, its height `[1][height][width · 3]`. A pass whose size does not change is skipped, as
/// both references skip it.
fn resample_axis(
    data: &[u8],
    [outer, n_in, inner]: [usize; 3],
    n_out: usize,
    filter: Filter,
    precision: BytePrecision,
) -> Vec<u8> {
    if n_out == n_in {
        return data.to_vec();
    }
    let taps = taps(n_in, n_out, filter);
    let pass = BytePass::new(&taps, precision);
    let mut out = vec![0u8; outer * n_out * inner];
    for o in 0..outer {
        for i in 0..n_out {
            for k in 0..inner {
                out[(o * n_out + i) * inner + k] =
                    pass.sample(i, |j| data[(o * n_in + j) * inner + k]);
            }
        }
    }
    out
}

/// The weights of a pass as a row-major `[n_out, n_in]` matrix: `output = M · input` along the resampled axis.
pub fn resample_matrix(n_in: usize, n_out: usize, filter: Filter) -> Vec<f32> {
    let mut matrix = vec![0.0; n_out * n_in];
    for (i, t) in taps(n_in, n_out, filter).iter().enumerate() {
        for (k, w) in t.weights.iter().enumerate() {
            matrix[i * n_in + t.first + k] = *w as f32;
        }
    }
    matrix
}
