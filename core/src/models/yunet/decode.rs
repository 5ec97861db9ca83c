//! OpenCV's `FaceDetectorYN` post-processing (`modules/objdetect/src/face_detect.cpp`), operation for operation:
//! anchors whose score `√(clamp(cls)·clamp(obj))` reaches the threshold are decoded in f32 (centre `(c + dx)·s`,
//! size `exp(dw)·s`, landmarks `(c + kx)·s`), then, where more than one face was found, `cv::dnn::NMSBoxes` runs on
//! the boxes **truncated to integers**: scores strictly above the threshold, a stable sort by score, the first
//! `top_k`, and greedy suppression of any box whose integer-area IoU with a kept one exceeds the NMS threshold.

/// One detection as OpenCV returns it: box `[x, y, w, h]`, five landmarks (right eye, left eye, nose tip, right and
/// left mouth corners, each `[x, y]`, in the image's own orientation), score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuNetFace {
    pub bbox: [f32; 4],
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
}

/// Thresholds as `FaceDetectorYN::create` takes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuNetConfig {
    pub score_threshold: f32,
    pub nms_threshold: f32,
    pub top_k: usize,
}

impl Default for YuNetConfig {
    /// DeepFace's: score 0.9 (its `yunet_score_threshold`), OpenCV's NMS 0.3 and top 5000.
    fn default() -> Self {
        Self {
            score_threshold: 0.9,
            nms_threshold: 0.3,
            top_k: 5000,
        }
    }
}

pub const STRIDES: [usize; 3] = [8, 16, 32];

/// One level's predictions on the host, row-major over its `rows × cols` anchors.
pub struct Level<'a> {
    pub cls: &'a [f32],
    pub obj: &'a [f32],
    pub bbox: &'a [f32],
    pub kps: &'a [f32],
}

/// The faces of three levels (strides 8, 16, 32) of a `pad_h × pad_w` input.
pub fn decode(
    levels: &[Level<'_>; 3],
    pad_h: usize,
    pad_w: usize,
    config: &YuNetConfig,
) -> Vec<YuNetFace> {
    let mut faces = Vec::new();
    for (level, &stride) in levels.iter().zip(&STRIDES) {
        let (rows, cols) = (pad_h / stride, pad_w / stride);
        let s = stride as f32;
        for r in 0..rows {
            for c in 0..cols {
                let idx = r * cols + c;
                let score =
                    (level.cls[idx].clamp(0.0, 1.0) * level.obj[idx].clamp(0.0, 1.0)).sqrt();
                if score < config.score_threshold {
                    continue;
                }
                let b = &level.bbox[idx * 4..idx * 4 + 4];
                let (cx, cy) = ((c as f32 + b[0]) * s, (r as f32 + b[1]) * s);
                let (w, h) = (b[2].exp() * s, b[3].exp() * s);
                let k = &level.kps[idx * 10..idx * 10 + 10];
                let landmarks = std::array::from_fn(|n| {
                    [(k[2 * n] + c as f32) * s, (k[2 * n + 1] + r as f32) * s]
                });
                faces.push(YuNetFace {
                    bbox: [cx - w / 2.0, cy - h / 2.0, w, h],
                    landmarks,
                    score,
                });
            }
        }
    }
    if faces.len() <= 1 {
        return faces;
    }
    nms_boxes(&faces, config)
        .into_iter()
        .map(|i| faces[i])
        .collect()
}

/// `cv::dnn::NMSBoxes` on `Rect2i(int(x), int(y), int(w), int(h))`, eta 1: the kept indices, best first.
fn nms_boxes(faces: &[YuNetFace], config: &YuNetConfig) -> Vec<usize> {
    let rects: Vec<[i64; 4]> = faces
        .iter()
        .map(|f| f.bbox.map(|v| v as i32 as i64))
        .collect();
    let mut order: Vec<usize> = (0..faces.len())
        .filter(|&i| faces[i].score > config.score_threshold)
        .collect();
    order.sort_by(|&a, &b| faces[b].score.total_cmp(&faces[a].score)); // stable, as std::stable_sort
    order.truncate(config.top_k);
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if kept
            .iter()
            .all(|&k| overlap(&rects[i], &rects[k]) <= config.nms_threshold)
        {
            kept.push(i);
        }
    }
    kept
}

/// `1 − jaccardDistance(a, b)` for integer rectangles, as OpenCV computes it (areas in integers, the ratio in
/// double, the result in float).
fn overlap(a: &[i64; 4], b: &[i64; 4]) -> f32 {
    let (area_a, area_b) = (a[2] * a[3], b[2] * b[3]);
    if area_a + area_b <= 0 {
        return 1.0;
    }
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    let inter = if w > 0 && h > 0 { (w * h) as f64 } else { 0.0 };
    let distance = 1.0 - inter / ((area_a + area_b) as f64 - inter);
    1.0 - distance as f32
}
