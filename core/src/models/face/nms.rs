//! Non-maximum suppression on `[x1, y1, x2, y2]` f32 boxes, in the two flavours facenet-pytorch uses.
//!
//! * [`batched_nms`]: `torchvision.ops.batched_nms` (stages 1 and 2). Boxes are visited in decreasing
//!   score order (torchvision's CPU kernel sorts with `stable=True`, so equal scores keep their input
//!   order); a box suppresses every later box **of the same group** whose IoU with it is `> threshold`.
//!   Areas have no `+1`: `(x2 − x1)·(y2 − y1)`. IoU is computed in f32 as the kernel does
//!   (`inter / (area_i + area_j − inter)`) and compared with the f64 threshold.
//! * [`nms_min`]: facenet-pytorch's `batched_nms_numpy(…, 'Min')` for stage 3: areas with `+1`,
//!   overlap = `inter / min(area_i, area_j)`, boxes are kept while overlap `<=` threshold, all in f32
//!   (numpy 2 casts the Python threshold to the array's float32). The reference orders with
//!   `np.argsort(scores)` (not stable) and takes the last; here equal scores are broken by taking the
//!   later input first, which is what a stable ascending sort would do.
//!
//! Both return the kept indices in the order they were kept (decreasing score).

use std::cmp::Ordering;

/// `torchvision.ops.nms`: one group.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    batched_nms(boxes, scores, &vec![0; boxes.len()], iou_threshold)
}

/// `torchvision.ops.batched_nms`: NMS within each group of `groups` (image index in facenet-pytorch).
pub fn batched_nms(
    boxes: &[[f32; 4]],
    scores: &[f32],
    groups: &[usize],
    iou_threshold: f64,
) -> Vec<usize> {
    assert!(boxes.len() == scores.len() && boxes.len() == groups.len());
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let areas: Vec<f32> = boxes.iter().map(area).collect();
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Stable, descending; NaN scores (never produced by a softmax) sort last.
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or_else(|| scores[a].is_nan().cmp(&scores[b].is_nan()))
    });
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        for &j in &order[k + 1..] {
            if suppressed[j] || groups[j] != groups[i] {
                continue;
            }
            let bj = &boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let iou = inter / (areas[i] + areas[j] - inter);
            if f64::from(iou) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// facenet-pytorch's `nms_numpy(…, 'Min')` (one group; the caller runs one image at a time).
pub fn nms_min(boxes: &[[f32; 4]], scores: &[f32], threshold: f32) -> Vec<usize> {
    assert_eq!(boxes.len(), scores.len());
    let area = |b: &[f32; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let areas: Vec<f32> = boxes.iter().map(area).collect();
    // Ascending and stable, as `np.argsort` would be without ties; the last is visited first.
    let mut remaining: Vec<usize> = (0..boxes.len()).collect();
    remaining.sort_by(|&a, &b| scores[a].partial_cmp(&scores[b]).unwrap_or(Ordering::Equal));
    let mut keep = Vec::new();
    while let Some(i) = remaining.pop() {
        keep.push(i);
        let bi = &boxes[i];
        remaining.retain(|&j| {
            let bj = &boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + 1.0).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + 1.0).max(0.0);
            let overlap = w * h / areas[i].min(areas[j]);
            overlap <= threshold
        });
    }
    keep
}
