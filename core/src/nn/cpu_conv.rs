//! Convolution on burn-ndarray as one matrix product on the arrays' own buffers, forward and backward.
//!
//! burn 0.21's ndarray convolution is a scalar loop (its SIMD kernels sit behind the `simd` feature, which we
//! leave off: bench/NOTES.md, "burn-ndarray's SIMD reciprocal"), and its input gradient a seven-deep scalar
//! `conv_transpose2d`. Written with burn's tensor ops instead (k² slices, a stack, a matmul), a training step
//! spent most of its time copying: the backward matmuls made every transposed operand contiguous first, and
//! autodiff gave each of the k² slices a zero-filled gradient the size of the input (bench/NOTES.md). This op
//! works on the buffers directly:
//!
//! ```text
//! columns [c·kh·kw, n·oh·ow] = im2col(x)                 rows in the weight's (c, kh, kw) order
//! out     [oc, n·oh·ow]      = W [oc, c·kh·kw] · columns  then laid out as [n, oc, oh, ow], plus the bias
//! backward, with dOut laid out as [oc, n·oh·ow]:
//!     dW = dOut · columnsᵀ      dColumns = Wᵀ · dOut      dx = col2im(dColumns)      db = row sums of dOut
//! ```
//!
//! The products are matrixmultiply's gemm (what burn-ndarray's matmul calls), which reads transposed operands
//! through their strides. The backward pass recomputes the columns from the saved input instead of keeping
//! k² copies of it on the tape, and computes only the gradients the graph asks for (a frozen base weight gets
//! none). Threads split outputs (gemm's blocks, im2col's rows, col2im's channel planes), never a sum, so the
//! results do not depend on the thread count.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::ops::{Add, AddAssign, Div, Mul, Sub};

use burn::backend::NdArray;
use burn::backend::ndarray::NdArrayTensor;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Element, TensorPrimitive};
use rayon::prelude::*;

use super::cpu_matmul::Strided;

/// The float types the kernels run on, with their gemm.
pub trait Real:
    Element
    + Copy
    + Default
    + AddAssign
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + PartialOrd
    + Send
    + Sync
    + 'static
{
    /// `NdArray<Self>`.
    type Cpu: Backend;

    /// `value` rounded to `Self`, as burn converts a scalar operand.
    fn of_f64(value: f64) -> Self;

    /// Whether this is `f64` (whose SiLU the models write with `tanh`, `nn::silu`).
    const DOUBLE: bool;

    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    /// As burn-ndarray computes it: libm's `erf` in f64, rounded back.
    fn erf(self) -> Self;

    /// The tensor's own buffer, where it holds `Self` values in row-major order.
    fn contiguous(tensor: &FloatTensor<Self::Cpu>) -> Option<&[Self]>;

    /// The tensor's values in whatever layout it has (a view: transposed, expanded, sliced), where it holds
    /// `Self` values.
    fn strided(tensor: &FloatTensor<Self::Cpu>) -> Option<super::cpu_matmul::Strided<'_, Self>>;

    /// matrixmultiply's `C ← α A B + β C` with α = 1, and β = 1 where `accumulate`, else 0 (`C` is written,
    /// not read). `c` is the first output and the stride between its rows (its columns are adjacent).
    ///
    /// # Safety
    /// As matrixmultiply's: every element addressed by the dimensions and strides lies inside its buffer.
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        c: (*mut Self, isize),
        accumulate: bool,
    );
}

/// `Real` for one float type, with the [`Kernel`]s of its ndarray backends.
macro_rules! real {
    ($float:ty, $variant:ident, $gemm:path) => {
        impl Real for $float {
            type Cpu = NdArray<$float>;

            fn of_f64(value: f64) -> Self {
                value as $float
            }

            const DOUBLE: bool = std::mem::size_of::<$float>() == 8;

            fn exp(self) -> Self {
                <$float>::exp(self)
            }

            fn ln(self) -> Self {
                <$float>::ln(self)
            }

            fn sqrt(self) -> Self {
                <$float>::sqrt(self)
            }

            fn tanh(self) -> Self {
                <$float>::tanh(self)
            }

            fn erf(self) -> Self {
                libm::erf(self as f64) as $float
            }

            fn contiguous(tensor: &NdArrayTensor) -> Option<&[$float]> {
                match tensor {
                    NdArrayTensor::$variant(storage) => storage.view().to_slice(),
                    _ => None,
                }
            }

            fn strided(tensor: &NdArrayTensor) -> Option<super::cpu_matmul::Strided<'_, $float>> {
                match tensor {
                    NdArrayTensor::$variant(storage) => {
                        let view = storage.view();
                        // SAFETY: the view addresses the storage's own elements, which `tensor` keeps alive
                        // for the borrow.
                        Some(unsafe {
                            super::cpu_matmul::Strided::new(
                                view.as_ptr(),
                                view.shape(),
                                view.strides(),
                            )
                        })
                    }
                    _ => None,
                }
            }

            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: (*const $float, isize, isize),
                b: (*const $float, isize, isize),
                c: (*mut $float, isize),
                accumulate: bool,
            ) {
                let beta = if accumulate { 1.0 } else { 0.0 };
                // SAFETY: forwarded from the caller.
                unsafe {
                    $gemm(
                        m, k, n, 1.0, a.0, a.1, a.2, b.0, b.1, b.2, beta, c.0, c.1, 1,
                    )
                }
            }
        }

        impl Kernel for NdArray<$float> {
            fn run(args: Args<Self>, geometry: Geometry) -> Tensor<Self, 4> {
                plain::<$float>(args, geometry)
            }
        }

        #[cfg(feature = "autodiff")]
        impl<C: autodiff_op::CheckpointStrategy> Kernel
            for burn::backend::Autodiff<NdArray<$float>, C>
        {
            fn run(args: Args<Self>, geometry: Geometry) -> Tensor<Self, 4> {
                autodiff_op::tracked::<$float, C>(args, geometry)
            }
        }
    };
}

real!(f32, F32, matrixmultiply::sgemm);
real!(f64, F64, matrixmultiply::dgemm);

/// `a · b` into a new row-major buffer.
fn product<E: Real>(a: &Strided<E>, b: &Strided<E>) -> Vec<E> {
    super::cpu_matmul::product(a, b, &[]).0
}

/// A convolution's kernel, stride and explicit padding (`top, left, bottom, right`); groups and dilation 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 4],
}

impl Geometry {
    /// The geometry of `conv`, or `None` where these kernels do not apply (groups, dilation, `Same` padding).
    pub fn of<B: Backend>(conv: &Conv2d<B>) -> Option<Self> {
        let padding = match conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Same => return None,
        };
        (conv.groups == 1 && conv.dilation == [1, 1]).then_some(Self {
            kernel: conv.kernel_size,
            stride: conv.stride,
            padding,
        })
    }
}

/// Every size of one convolution call.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    geometry: Geometry,
    /// Batch, input channels, height, width.
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    out_c: usize,
    out_h: usize,
    out_w: usize,
}

impl Sizes {
    fn new(geometry: Geometry, [n, c, h, w]: [usize; 4], out_c: usize) -> Self {
        let ([kh, kw], [sh, sw], [top, left, bottom, right]) =
            (geometry.kernel, geometry.stride, geometry.padding);
        let out_h = (h + top + bottom - kh) / sh + 1;
        let out_w = (w + left + right - kw) / sw + 1;
        Self {
            geometry,
            n,
            c,
            h,
            w,
            out_c,
            out_h,
            out_w,
        }
    }

    /// Rows of the column matrix: `c · kh · kw`.
    fn taps(&self) -> usize {
        self.c * self.geometry.kernel[0] * self.geometry.kernel[1]
    }

    /// Columns of the column matrix: every output position of every image.
    fn positions(&self) -> usize {
        self.n * self.out_h * self.out_w
    }

    /// `(channel, i, j)` of column-matrix row `row`.
    fn tap(&self, row: usize) -> (usize, usize, usize) {
        let [kh, kw] = self.geometry.kernel;
        (row / (kh * kw), row / kw % kh, row % kw)
    }

    /// The input row read by output row `out_y` through kernel row `i`, if inside the image.
    fn input_y(&self, out_y: usize, i: usize) -> Option<usize> {
        (out_y * self.geometry.stride[0] + i)
            .checked_sub(self.geometry.padding[0])
            .filter(|&y| y < self.h)
    }

    /// The output columns whose input column through kernel column `j` lies inside the image, and the input
    /// column of the first of them. Consecutive outputs read every `stride`-th input column.
    fn valid_x(&self, j: usize) -> (std::ops::Range<usize>, usize) {
        let (left, stride) = (self.geometry.padding[1], self.geometry.stride[1]);
        // Output x reads input column x·stride + j − left: from the first x with x·stride + j ≥ left to the
        // last with x·stride + j − left < w.
        let first = left.saturating_sub(j).div_ceil(stride);
        let end = if self.w + left > j {
            (self.w + left - j).div_ceil(stride).min(self.out_w)
        } else {
            0
        };
        let first = first.min(end);
        (first..end, (first * stride + j).saturating_sub(left))
    }
}

/// `columns[(ci, i, j)][b·oh·ow + oy·ow + ox] = x[b][ci][oy·sh + i − top][ox·sw + j − left]`, 0 outside.
fn im2col<E: Real>(x: &[E], s: &Sizes) -> Vec<E> {
    let (plane, image) = (s.out_h * s.out_w, s.h * s.w);
    let stride = s.geometry.stride[1];
    let mut columns = vec![E::default(); s.taps() * s.positions()];
    columns
        .par_chunks_mut(s.positions())
        .enumerate()
        .for_each(|(row, out)| {
            let (ci, i, j) = s.tap(row);
            let (xs, first_in) = s.valid_x(j);
            if xs.is_empty() {
                return;
            }
            for b in 0..s.n {
                let src = &x[(b * s.c + ci) * image..][..image];
                for oy in 0..s.out_h {
                    let Some(iy) = s.input_y(oy, i) else { continue };
                    let dst = &mut out[b * plane + oy * s.out_w..][..s.out_w][xs.clone()];
                    let src = &src[iy * s.w + first_in..];
                    if stride == 1 {
                        dst.copy_from_slice(&src[..dst.len()]);
                    } else {
                        dst.iter_mut()
                            .enumerate()
                            .for_each(|(k, value)| *value = src[k * stride]);
                    }
                }
            }
        });
    columns
}

/// The adjoint of [`im2col`]: every column-matrix entry added to the input position it was read from.
fn col2im<E: Real>(columns: &[E], s: &Sizes) -> Vec<E> {
    let (plane, image) = (s.out_h * s.out_w, s.h * s.w);
    let [kh, kw] = s.geometry.kernel;
    let stride = s.geometry.stride[1];
    let mut x = vec![E::default(); s.n * s.c * image];
    x.par_chunks_mut(image)
        .enumerate()
        .for_each(|(index, dst)| {
            let (b, ci) = (index / s.c, index % s.c);
            for i in 0..kh {
                for j in 0..kw {
                    let (xs, first_in) = s.valid_x(j);
                    if xs.is_empty() {
                        continue;
                    }
                    let row =
                        &columns[((ci * kh + i) * kw + j) * s.positions() + b * plane..][..plane];
                    for oy in 0..s.out_h {
                        let Some(iy) = s.input_y(oy, i) else { continue };
                        let src = &row[oy * s.out_w..][..s.out_w][xs.clone()];
                        let dst = &mut dst[iy * s.w + first_in..];
                        if stride == 1 {
                            dst.iter_mut()
                                .zip(src)
                                .for_each(|(value, &add)| *value += add);
                        } else {
                            src.iter()
                                .enumerate()
                                .for_each(|(k, &add)| dst[k * stride] += add);
                        }
                    }
                }
            }
        });
    x
}

/// The convolution of `x` (`[n, c, h, w]`) with `weight` (`[oc, c, kh, kw]`), as `[n, oc, oh, ow]`.
fn forward<E: Real>(x: &[E], weight: &[E], bias: Option<&[E]>, s: &Sizes) -> Vec<E> {
    let columns = im2col(x, s);
    let by_channel = product(
        &Strided::rows(weight, s.out_c, s.taps()),
        &Strided::rows(&columns, s.taps(), s.positions()),
    );
    let plane = s.out_h * s.out_w;
    let mut out = vec![E::default(); s.n * s.out_c * plane];
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(index, dst)| {
            let (b, o) = (index / s.out_c, index % s.out_c);
            dst.copy_from_slice(&by_channel[(o * s.n + b) * plane..][..plane]);
            if let Some(bias) = bias {
                dst.iter_mut().for_each(|value| *value += bias[o]);
            }
        });
    out
}

/// The gradients of `x`, the weight and the bias that `wanted` asks for, from the output's gradient.
fn backward<E: Real>(
    x: &[E],
    weight: &[E],
    grad_out: &[E],
    s: &Sizes,
    wanted: [bool; 3],
) -> [Option<Vec<E>>; 3] {
    let plane = s.out_h * s.out_w;
    // dOut as [oc, n·oh·ow], the layout of the forward product.
    let mut grad = vec![E::default(); s.out_c * s.positions()];
    grad.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(index, dst)| {
            let (o, b) = (index / s.n, index % s.n);
            dst.copy_from_slice(&grad_out[(b * s.out_c + o) * plane..][..plane]);
        });
    let grad_view = Strided::rows(&grad, s.out_c, s.positions());
    let grad_x = wanted[0].then(|| {
        let grad_columns = product(
            &Strided::rows(weight, s.out_c, s.taps()).transposed(),
            &grad_view,
        );
        col2im(&grad_columns, s)
    });
    let grad_weight = wanted[1].then(|| {
        let columns = im2col(x, s);
        product(
            &grad_view,
            &Strided::rows(&columns, s.taps(), s.positions()).transposed(),
        )
    });
    let grad_bias = wanted[2].then(|| {
        grad.par_chunks(s.positions())
            .map(|row| {
                row.iter().fold(E::default(), |mut sum, &v| {
                    sum += v;
                    sum
                })
            })
            .collect()
    });
    [grad_x, grad_weight, grad_bias]
}

/// A `D`-dimensional tensor's values in row-major order: its own buffer where it is contiguous (no copy), else
/// a copy made one row at a time (ndarray copies a view element by element through its dynamic-rank index);
/// a tensor of another float type is converted.
pub(super) fn values<E: Real, const D: usize>(tensor: &FloatTensor<E::Cpu>) -> Cow<'_, [E]> {
    if let Some(slice) = E::contiguous(tensor) {
        return Cow::Borrowed(slice);
    }
    if let Some(view) = E::strided(tensor) {
        return Cow::Owned(view.to_row_major());
    }
    let tensor = Tensor::<E::Cpu, D>::from_primitive(TensorPrimitive::Float(tensor.clone()));
    Cow::Owned(
        tensor
            .into_data()
            .convert::<E>()
            .into_vec()
            .expect("converted to E"),
    )
}

fn tensor<E: Real, const D: usize>(values: Vec<E>, shape: [usize; D]) -> Tensor<E::Cpu, D> {
    Tensor::from_data(
        burn::tensor::TensorData::new(values, shape),
        &Default::default(),
    )
}

/// A backend these kernels run on.
trait Kernel: Backend {
    fn run(args: Args<Self>, geometry: Geometry) -> Tensor<Self, 4>;
}

/// A convolution's operands.
struct Args<B: Backend> {
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Args<B> {
    fn sizes(&self, geometry: Geometry) -> Sizes {
        Sizes::new(geometry, self.x.dims(), self.weight.dims()[0])
    }
}

/// The convolution on `NdArray<E>`.
fn plain<E: Real>(args: Args<E::Cpu>, geometry: Geometry) -> Tensor<E::Cpu, 4> {
    let s = args.sizes(geometry);
    let [x, weight] = [args.x, args.weight].map(|t| t.into_primitive().tensor());
    let bias = args.bias.map(|b| b.into_primitive().tensor());
    let bias = bias.as_ref().map(values::<E, 1>);
    let out = forward(
        &values::<E, 4>(&x),
        &values::<E, 4>(&weight),
        bias.as_deref(),
        &s,
    );
    tensor(out, [s.n, s.out_c, s.out_h, s.out_w])
}

/// `value` as type `U`, which it is (the caller compared their `TypeId`s).
pub(super) fn recast<T: 'static, U: 'static>(value: T) -> U {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<U>()
        .expect("the same type")
}

fn via<B: Backend, K: Kernel>(args: Args<B>, geometry: Geometry) -> Tensor<B, 4> {
    let args = Args::<K> {
        x: recast(args.x),
        weight: recast(args.weight),
        bias: args.bias.map(recast),
    };
    recast(K::run(args, geometry))
}

type Erased<B> = fn(Args<B>, Geometry) -> Tensor<B, 4>;

/// `K`'s kernel, erased to backend `B`, where `B` is `K`.
fn pick<B: Backend, K: Kernel>() -> Option<Erased<B>> {
    (TypeId::of::<B>() == TypeId::of::<K>()).then_some(via::<B, K> as Erased<B>)
}

/// These kernels for backend `B`, if it is ndarray (f32 or f64; with autodiff where the feature is on).
fn kernel_for<B: Backend>() -> Option<Erased<B>> {
    let plain = pick::<B, NdArray<f32>>().or_else(pick::<B, NdArray<f64>>);
    #[cfg(feature = "autodiff")]
    let plain = plain.or_else(autodiff_op::kernel_for::<B>);
    plain
}

/// Whether these kernels run on backend `B`.
pub fn runs_on<B: Backend>() -> bool {
    kernel_for::<B>().is_some()
}

/// `conv` on `x` with these kernels, or `x` back where they do not apply (another backend, or a geometry
/// [`Geometry::of`] rejects).
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let (Some(geometry), Some(kernel)) = (Geometry::of(conv), kernel_for::<B>()) else {
        return Err(x);
    };
    let (weight, bias) = (conv.weight.val(), conv.bias.as_ref().map(|bias| bias.val()));
    Ok(kernel(Args { x, weight, bias }, geometry))
}

#[cfg(feature = "autodiff")]
mod autodiff_op {
    use std::marker::PhantomData;

    use burn::backend::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    pub(super) use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::tensor::ops::FloatTensorOps;

    use super::*;

    pub(super) fn kernel_for<B: Backend>() -> Option<Erased<B>> {
        pick::<B, Autodiff<NdArray<f32>, NoCheckpointing>>()
            .or_else(pick::<B, Autodiff<NdArray<f32>, BalancedCheckpointing>>)
            .or_else(pick::<B, Autodiff<NdArray<f64>, NoCheckpointing>>)
            .or_else(pick::<B, Autodiff<NdArray<f64>, BalancedCheckpointing>>)
    }

    fn inner<E: Real, const D: usize>(primitive: FloatTensor<E::Cpu>) -> Tensor<E::Cpu, D> {
        Tensor::from_primitive(TensorPrimitive::Float(primitive))
    }

    /// The convolution on `Autodiff<NdArray<E>, C>`: [`plain`] forward, [`ConvBackward`] on the tape.
    pub(super) fn tracked<E: Real, C: CheckpointStrategy>(
        args: Args<Autodiff<E::Cpu, C>>,
        geometry: Geometry,
    ) -> Tensor<Autodiff<E::Cpu, C>, 4> {
        let sizes = args.sizes(geometry);
        // A convolution without bias gets an untracked zero bias as its third parent, which asks for no
        // gradient; the forward pass adds nothing.
        let bias_node = match &args.bias {
            Some(bias) => bias.clone().into_primitive().tensor().node,
            None => {
                Tensor::<Autodiff<E::Cpu, C>, 1>::zeros([sizes.out_c], &args.x.device())
                    .into_primitive()
                    .tensor()
                    .node
            }
        };
        let [x, weight] = [args.x, args.weight].map(|t| t.into_primitive().tensor());
        let bias = args
            .bias
            .map(|b| inner::<E, 1>(b.into_primitive().tensor().primitive));
        let plain_args = Args {
            x: inner::<E, 4>(x.primitive.clone()),
            weight: inner::<E, 4>(weight.primitive.clone()),
            bias,
        };
        let out = plain::<E>(plain_args, geometry).into_primitive().tensor();
        let nodes = [x.node.clone(), weight.node.clone(), bias_node];
        let backward = ConvBackward::<E>(sizes, PhantomData);
        let output = match backward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish([x.primitive, weight.primitive], out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(output))
    }

    #[derive(Debug)]
    struct ConvBackward<E>(Sizes, PhantomData<E>);

    impl<E: Real> Backward<E::Cpu, 3> for ConvBackward<E> {
        /// The input and the weight: the columns are recomputed from them.
        type State = [FloatTensor<E::Cpu>; 2];

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let s = self.0;
            let grad_out = grads.consume::<E::Cpu>(&ops.node);
            let [x, weight] = &ops.state;
            let [grad_out, x, weight] = [&grad_out, x, weight].map(values::<E, 4>);
            let wanted = ops.parents.each_ref().map(Option::is_some);
            let gradients = backward(&x, &weight, &grad_out, &s, wanted);
            let [kh, kw] = s.geometry.kernel;
            let shapes = [
                vec![s.n, s.c, s.h, s.w],
                vec![s.out_c, s.c, kh, kw],
                vec![s.out_c],
            ];
            for ((parent, grad), shape) in ops.parents.into_iter().zip(gradients).zip(shapes) {
                if let (Some(node), Some(grad)) = (parent, grad) {
                    let data = burn::tensor::TensorData::new(grad, shape);
                    let grad = E::Cpu::float_from_data(data, &Default::default());
                    grads.register::<E::Cpu>(node.id, grad);
                }
            }
        }
    }
}
