//! How every convolution of the models runs.
//!
//! burn 0.21's ndarray backend computes a convolution's input gradient with a scalar seven-deep
//! `conv_transpose2d` loop: a training step of a small U-Net spends over 90% of its time there
//! (bench/NOTES.md). On that backend we lower the convolution to shifted windows of
//! the padded input and one matrix product (im2col), whose forward and backward are all fast ops; the
//! result is the same convolution (checked against the model fixtures and in `tests/conv.rs`).
//! Everywhere else burn's own kernel runs: it is fast there and needs no k²-times larger buffer.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::Slice;
use burn::tensor::ops::PadMode;

/// Runs `conv` on `x` (`[B, C, H, W]`), as `conv.forward(x)` would.
pub fn apply<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if conv.groups != 1 || conv.dilation != [1, 1] || !lowers_to_matmul::<B>(&x.device()) {
        return conv.forward(x);
    }
    let Some(pad) = explicit_padding(&conv.padding) else {
        return conv.forward(x);
    };
    im2col_conv(conv, x, pad)
}

/// Whether this backend's convolutions are better expressed as matrix products (see the module doc): on
/// ndarray, with or without autodiff. Its direct forward kernel is a scalar loop too unless burn-ndarray's
/// `simd` feature is on, which we leave off (its reciprocal is approximate; bench/NOTES.md, "burn-ndarray's
/// SIMD reciprocal").
pub fn lowers_to_matmul<B: Backend>(device: &B::Device) -> bool {
    B::name(device).contains("ndarray")
}

/// `(top, left, bottom, right)` of an explicit padding.
fn explicit_padding(padding: &PaddingConfig2d) -> Option<[usize; 4]> {
    match padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some([*top, *left, *bottom, *right]),
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Same => None,
    }
}

fn im2col_conv<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>, pad: [usize; 4]) -> Tensor<B, 4> {
    let [top, left, bottom, right] = pad;
    let [n, c, h, w] = x.dims();
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.stride;
    let out_h = (h + top + bottom - kh) / sh + 1;
    let out_w = (w + left + right - kw) / sw + 1;
    let weight = conv.weight.val();
    let out_c = weight.dims()[0];
    // `columns` [n, c·kh·kw, out_h·row]: rows ordered as the weight's (c, kh, kw) flattening; each
    // output row is `row` wide, of which the first `out_w` are the convolution's.
    let (columns, row) = if kh * kw == 1 && sh == 1 && sw == 1 && pad == [0; 4] {
        (x.reshape([n, c, h * w]), w)
    } else if sh == 1 && sw == 1 {
        // One spare zero row keeps the last window's wrapped tail inside the buffer.
        let padded = x.pad((left, right, top, bottom + 1), PadMode::Constant(0.0));
        let [_, _, hp, wp] = padded.dims();
        (
            flat_windows(padded.reshape([n, c, hp * wp]), [kh, kw], wp, out_h),
            wp,
        )
    } else {
        let padded = if pad == [0; 4] {
            x
        } else {
            x.pad((left, right, top, bottom), PadMode::Constant(0.0))
        };
        let mut shifted = Vec::with_capacity(kh * kw);
        for i in 0..kh {
            for j in 0..kw {
                shifted.push(padded.clone().slice([
                    Slice::full(),
                    Slice::full(),
                    Slice::new(
                        i as isize,
                        Some((i + (out_h - 1) * sh + 1) as isize),
                        sh as isize,
                    ),
                    Slice::new(
                        j as isize,
                        Some((j + (out_w - 1) * sw + 1) as isize),
                        sw as isize,
                    ),
                ]));
            }
        }
        // [n, c, kh·kw, out_h, out_w]
        let columns = Tensor::stack::<5>(shifted, 2).reshape([n, c * kh * kw, out_h * out_w]);
        (columns, out_w)
    };
    // The matmul broadcasts the kernel over the batch: ndarray's matmul makes its operands contiguous, so an
    // `expand`ed kernel would be copied n times (the same bits either way; no speed difference measured on
    // the toy's 20 training steps, bench/NOTES.md).
    let kernel = weight.reshape([1, out_c, c * kh * kw]);
    let out = kernel.matmul(columns).reshape([n, out_c, out_h, row]);
    let out = if row == out_w {
        out
    } else {
        out.slice([0..n, 0..out_c, 0..out_h, 0..out_w])
    };
    match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, out_c, 1, 1]),
        None => out,
    }
}

/// Stride-1 windows of a flattened padded image `[n, c, hp·wp]` (at least one spare row below):
/// window (i, j) is the contiguous range starting at i·wp + j, `out_h` rows of `wp` values, whose
/// last `wp − out_w` values per row wrap into the next row and are cut from the product. ndarray
/// copies long contiguous ranges faster than strided 4-D slices, which cost a toy training step a
/// fifth of its time (bench/NOTES.md, "toy demo"). Returns `[n, c·kh·kw, out_h·wp]`.
fn flat_windows<B: Backend>(
    flat: Tensor<B, 3>,
    [kh, kw]: [usize; 2],
    wp: usize,
    out_h: usize,
) -> Tensor<B, 3> {
    let [n, c, _] = flat.dims();
    let len = out_h * wp;
    let windows = (0..kh)
        .flat_map(|i| (0..kw).map(move |j| i * wp + j))
        .map(|start| flat.clone().slice([0..n, 0..c, start..start + len]))
        .collect();
    Tensor::stack::<4>(windows, 2).reshape([n, c * kh * kw, len])
}
