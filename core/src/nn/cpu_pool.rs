//! Adaptive average pooling on burn-ndarray's buffers: torch's `interpolate(mode="area")`, which MTCNN's image
//! pyramid and crops, the face classifiers' resizing and the toy classifier use on every image.
//!
//! burn-ndarray 0.21 computes it with one dynamic-rank, bounds-checked index per input element: in the face
//! pipeline that indexing took a fifth of the time (bench/NOTES.md). This kernel reads each `[h, w]` plane as a
//! slice, with burn's window bounds and summation order, so its results are burn's bit for bit. Inference
//! only: under autodiff, models keep burn's op, whose backward the tape needs.

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;
use rayon::prelude::*;

use super::cpu_conv::{Real, recast, values};
use super::cpu_matmul::{float_tensor, for_plain_ndarray};

/// First input index of output cell `index` of `outputs` over `inputs` (burn's and torch's rule).
fn window_start(index: usize, outputs: usize, inputs: usize) -> usize {
    ((index as f32 * inputs as f32) / outputs as f32).floor() as usize
}

/// One past the last input index of output cell `index`.
fn window_end(index: usize, outputs: usize, inputs: usize) -> usize {
    let end = (((index + 1) as f32 * inputs as f32) / outputs as f32).ceil() as usize;
    end.min(inputs)
}

/// One `[h, w]` plane pooled into `out` (`[oh, ow]`): each window summed row by row from zero, then divided by
/// its size.
fn pool_plane<E: Real>(plane: &[E], [h, w]: [usize; 2], out: &mut [E], [oh, ow]: [usize; 2]) {
    for y in 0..oh {
        let rows = window_start(y, oh, h)..window_end(y, oh, h);
        for x in 0..ow {
            let cols = window_start(x, ow, w)..window_end(x, ow, w);
            let mut sum = E::default();
            for row in rows.clone() {
                plane[row * w..][cols.clone()]
                    .iter()
                    .for_each(|&value| sum += value);
            }
            let count = (rows.len() * cols.len()) as i32;
            out[y * ow + x] = sum / E::of_f64(count as f64);
        }
    }
}

fn pooled<E: Real>(x: FloatTensor<E::Cpu>, size: [usize; 2]) -> FloatTensor<E::Cpu> {
    use burn::tensor::TensorMetadata;
    let shape = x.shape();
    let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let input = values::<E, 4>(&x);
    let mut out = vec![E::default(); n * c * size[0] * size[1]];
    if !out.is_empty() {
        out.par_chunks_mut(size[0] * size[1])
            .zip(input.par_chunks(h * w))
            .for_each(|(out, plane)| pool_plane(plane, [h, w], out, size));
    }
    float_tensor::<E>(out, [n, c, size[0], size[1]])
}

fn pooled_as<B: Backend, E: Real>(x: FloatTensor<B>, size: [usize; 2]) -> FloatTensor<B> {
    recast(pooled::<E>(recast(x), size))
}

/// `adaptive_avg_pool2d(x, size)` with this kernel on plain ndarray (f32, f64), or `x` back elsewhere.
pub fn adaptive_avg_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    size: [usize; 2],
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    type Kernel<B> = fn(FloatTensor<B>, [usize; 2]) -> FloatTensor<B>;
    let Some(kernel) = for_plain_ndarray::<B, Kernel<B>>(pooled_as::<B, f32>, pooled_as::<B, f64>)
    else {
        return Err(x);
    };
    let primitive = x.into_primitive().tensor();
    Ok(Tensor::from_primitive(TensorPrimitive::Float(kernel(
        primitive, size,
    ))))
}
