//! facenet-pytorch's `detect_face` for one image: the three MTCNN stages and the box arithmetic between
//! them, operation by operation in f32 where facenet-pytorch computes on float32 tensors.
//!
//! 1. **Pyramid and PNet.** Scales `m·factorᵏ` with `m = 12/min_face_size` while `min(H, W)·m·factorᵏ ≥ 12`
//!    (in f64, as Python does); each level is `interpolate(mode="area")` to `(int(H·s + 1), int(W·s + 1))`,
//!    normalised `(x − 127.5)·0.0078125` and run through PNet. Every output cell with probability `>=`
//!    threshold 0 becomes the box `floor((2·(x, y) + 1)/s)` … `floor((2·(x, y) + 12)/s)` (divided in f32
//!    by the f32 scale, as torch does), NMS 0.5 within the level, then NMS 0.7 over all levels.
//! 2. **Calibrate** with PNet's offsets (`x1 + reg·(x2 − x1)`, no +1), make square (`rerec`), cut the
//!    window `pad` gives (truncate to integers, clip to `1..=W`, crop `[y − 1, ey) × [x − 1, ex)`, no
//!    zero padding: a window at the border is resized with its aspect ratio changed), area-resize to
//!    24×24, RNet; keep probability `>` threshold 1, NMS 0.7, `bbreg` (`x1 + reg·(x2 − x1 + 1)`), `rerec`.
//! 3. The same windows at 48×48 through ONet; keep probability `>` threshold 2; landmarks
//!    `(x2 − x1 + 1)·l + x1 − 1` on the box before `bbreg`; `bbreg`; the "Min" NMS at 0.7.
//!
//! Finally the faces are ordered by box area (largest first), as `MTCNN.detect` does with
//! `select_largest=True`.
//!
//! One deviation: facenet-pytorch skips a window that is empty after clipping but keeps its box, so its
//! boxes and network outputs fall out of step (and it raises if every window is empty); here such a
//! candidate is dropped. It needs a box entirely outside the image, which the test photos never produce.

use crate::nn::pool::adaptive_avg_pool2d;
use burn::prelude::*;

use super::{Face, MtcnnConfig, MtcnnNets, nms, to_rgb};

/// How many candidates reached and passed the two refinement stages (what the parity test compares with
/// facenet-pytorch besides the faces).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageCounts {
    pub rnet_inputs: usize,
    pub rnet_passed: usize,
    pub onet_inputs: usize,
    pub onet_passed: usize,
}

/// facenet-pytorch runs the refinement networks in chunks of 512 crops.
const CHUNK: usize = 512;

/// A candidate box with its score and the offsets its stage predicted.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    bbox: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

/// The pyramid's scale factors for an `height`×`width` image, as facenet-pytorch computes them (f64).
pub fn pyramid_scales(height: usize, width: usize, min_face_size: f64, factor: f64) -> Vec<f64> {
    assert!(
        factor > 0.0 && factor < 1.0 && min_face_size > 0.0,
        "factor must lie in (0, 1) and min_face_size be positive"
    );
    let m = 12.0 / min_face_size;
    let mut minl = height.min(width) as f64 * m;
    let mut scale = m;
    let mut scales = Vec::new();
    while minl >= 12.0 {
        scales.push(scale);
        scale *= factor;
        minl *= factor;
    }
    scales
}

/// The faces of one image and the stage counts; fails only where the backend cannot read a result back.
pub(crate) async fn detect<B: Backend>(
    nets: &MtcnnNets<B>,
    config: &MtcnnConfig,
    image: Tensor<B, 3>,
) -> Result<(Vec<Face>, StageCounts), String> {
    let [_, height, width] = image.dims();
    let mut counts = StageCounts::default();
    let scales = pyramid_scales(height, width, config.min_face_size, config.factor);
    // No level for an image shorter than min_face_size (facenet-pytorch raises there). Stopping here
    // also keeps empty images away from reshapes that not every backend accepts.
    if scales.is_empty() {
        return Ok((Vec::new(), counts));
    }
    let image: Tensor<B, 4> = to_rgb(image).unsqueeze();
    // torch compares float32 probabilities with a Python float after casting it to float32.
    let thresholds = config.thresholds.map(|t| t as f32);

    // Stage 1: PNet on every pyramid level.
    let mut candidates = Vec::new();
    for scale in scales {
        let size = [
            (height as f64 * scale + 1.0) as usize,
            (width as f64 * scale + 1.0) as usize,
        ];
        let level = normalise(adaptive_avg_pool2d(image.clone(), size));
        let out = nets.pnet.forward(level);
        let [_, _, oh, ow] = out.prob.dims();
        let prob = host(out.prob).await?;
        let reg = host(out.reg).await?;
        let level_candidates =
            generate_boxes(&prob[oh * ow..], &reg, oh, ow, scale as f32, thresholds[0]);
        let pick = nms_of(&level_candidates, 0.5);
        candidates.extend(pick.into_iter().map(|i| level_candidates[i]));
    }
    let mut candidates = pick(&candidates, &nms_of(&candidates, 0.7));
    for c in &mut candidates {
        let [x1, y1, x2, y2] = c.bbox;
        let (w, h) = (x2 - x1, y2 - y1);
        c.bbox = [
            x1 + c.reg[0] * w,
            y1 + c.reg[1] * h,
            x2 + c.reg[2] * w,
            y2 + c.reg[3] * h,
        ];
        c.bbox = rerec(c.bbox);
    }

    // Stage 2: RNet on 24×24 crops.
    let (candidates, windows) = with_windows(candidates, width, height);
    counts.rnet_inputs = candidates.len();
    if candidates.is_empty() {
        return Ok((Vec::new(), counts));
    }
    let mut passed = Vec::new();
    for (chunk, chunk_windows) in candidates.chunks(CHUNK).zip(windows.chunks(CHUNK)) {
        let out = nets.rnet.forward(crops(&image, chunk_windows, 24));
        let prob = host(out.prob).await?;
        let reg = host(out.reg).await?;
        for (k, c) in chunk.iter().enumerate() {
            let score = prob[2 * k + 1];
            if score > thresholds[1] {
                passed.push(Candidate {
                    bbox: c.bbox,
                    score,
                    reg: [reg[4 * k], reg[4 * k + 1], reg[4 * k + 2], reg[4 * k + 3]],
                });
            }
        }
    }
    counts.rnet_passed = passed.len();
    let mut candidates = pick(&passed, &nms_of(&passed, 0.7));
    for c in &mut candidates {
        c.bbox = rerec(bbreg(c.bbox, c.reg));
    }

    // Stage 3: ONet on 48×48 crops.
    let (candidates, windows) = with_windows(candidates, width, height);
    counts.onet_inputs = candidates.len();
    if candidates.is_empty() {
        return Ok((Vec::new(), counts));
    }
    let mut faces = Vec::new();
    for (chunk, chunk_windows) in candidates.chunks(CHUNK).zip(windows.chunks(CHUNK)) {
        let out = nets.onet.forward(crops(&image, chunk_windows, 48));
        let prob = host(out.prob).await?;
        let reg = host(out.reg).await?;
        let marks = host(out.landmarks).await?;
        for (k, c) in chunk.iter().enumerate() {
            let score = prob[2 * k + 1];
            if score <= thresholds[2] {
                continue;
            }
            let [x1, y1, x2, y2] = c.bbox;
            let (w, h) = (x2 - x1 + 1.0, y2 - y1 + 1.0);
            let l = &marks[10 * k..10 * k + 10];
            let landmarks = std::array::from_fn(|i| [w * l[i] + x1 - 1.0, h * l[5 + i] + y1 - 1.0]);
            let reg = [reg[4 * k], reg[4 * k + 1], reg[4 * k + 2], reg[4 * k + 3]];
            faces.push(Face {
                bbox: bbreg(c.bbox, reg),
                probability: score,
                landmarks,
            });
        }
    }
    counts.onet_passed = faces.len();
    let boxes: Vec<[f32; 4]> = faces.iter().map(|f| f.bbox).collect();
    let scores: Vec<f32> = faces.iter().map(|f| f.probability).collect();
    let mut faces: Vec<Face> = nms::nms_min(&boxes, &scores, 0.7)
        .into_iter()
        .map(|i| faces[i])
        .collect();
    if config.select_largest {
        let area = |f: &Face| (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]);
        faces.sort_by(|a, b| area(b).total_cmp(&area(a)));
    }
    Ok((faces, counts))
}

/// `(x − 127.5)·0.0078125`, MTCNN's input normalisation.
fn normalise<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    x.sub_scalar(127.5).mul_scalar(0.0078125)
}

/// A tensor's values on the host, as f32.
pub(crate) async fn host<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Vec<f32>, String> {
    let data = x
        .into_data_async()
        .await
        .map_err(|e| format!("reading a result back from the device failed: {e:?}"))?;
    Ok(data
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 after convert"))
}

/// facenet-pytorch's `generateBoundingBox`: cells of one PNet map (`prob` = face channel, `[h, w]`;
/// `reg` `[4, h, w]`) with probability `>=` threshold, in row-major order.
fn generate_boxes(
    prob: &[f32],
    reg: &[f32],
    h: usize,
    w: usize,
    scale: f32,
    threshold: f32,
) -> Vec<Candidate> {
    let plane = h * w;
    let mut out = Vec::new();
    for (i, &score) in prob[..plane].iter().enumerate() {
        if score < threshold {
            continue;
        }
        let (x, y) = ((i % w) as f32, (i / w) as f32);
        out.push(Candidate {
            bbox: [
                ((2.0 * x + 1.0) / scale).floor(),
                ((2.0 * y + 1.0) / scale).floor(),
                ((2.0 * x + 12.0) / scale).floor(),
                ((2.0 * y + 12.0) / scale).floor(),
            ],
            score,
            reg: std::array::from_fn(|c| reg[c * plane + i]),
        });
    }
    out
}

fn nms_of(candidates: &[Candidate], threshold: f64) -> Vec<usize> {
    let boxes: Vec<[f32; 4]> = candidates.iter().map(|c| c.bbox).collect();
    let scores: Vec<f32> = candidates.iter().map(|c| c.score).collect();
    nms::nms(&boxes, &scores, threshold)
}

fn pick(candidates: &[Candidate], indices: &[usize]) -> Vec<Candidate> {
    indices.iter().map(|&i| candidates[i]).collect()
}

/// facenet-pytorch's `bbreg`: offsets relative to the box size with the +1 of inclusive pixel boxes.
fn bbreg(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// facenet-pytorch's `rerec`: the square of side `max(w, h)` with the same centre.
fn rerec(b: [f32; 4]) -> [f32; 4] {
    let h = b[3] - b[1];
    let w = b[2] - b[0];
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// facenet-pytorch's `pad` and the crop condition: the window `[y0, y1) × [x0, x1)` (0-based) that is
/// cut for a box, or `None` where it is empty.
fn window(b: [f32; 4], width: usize, height: usize) -> Option<[usize; 4]> {
    // `boxes.trunc().int()`, then x, y ≥ 1 and ex ≤ W, ey ≤ H.
    let [x, y, ex, ey] = b.map(|v| v.trunc() as i64);
    let (x, y) = (x.max(1), y.max(1));
    let (ex, ey) = (ex.min(width as i64), ey.min(height as i64));
    (ey > y - 1 && ex > x - 1)
        .then(|| [(y - 1) as usize, ey as usize, (x - 1) as usize, ex as usize])
}

/// The candidates whose window is not empty, with their windows.
fn with_windows(
    candidates: Vec<Candidate>,
    width: usize,
    height: usize,
) -> (Vec<Candidate>, Vec<[usize; 4]>) {
    candidates
        .into_iter()
        .filter_map(|c| window(c.bbox, width, height).map(|w| (c, w)))
        .unzip()
}

/// Each window of `image` (`[1, 3, H, W]`) area-resized to `size`×`size` and normalised: `[N, 3, size, size]`.
fn crops<B: Backend>(image: &Tensor<B, 4>, windows: &[[usize; 4]], size: usize) -> Tensor<B, 4> {
    let parts = windows
        .iter()
        .map(|&[y0, y1, x0, x1]| {
            adaptive_avg_pool2d(
                image.clone().slice([0..1, 0..3, y0..y1, x0..x1]),
                [size, size],
            )
        })
        .collect();
    normalise(Tensor::cat(parts, 0))
}
