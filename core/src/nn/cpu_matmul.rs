//! Matrix products on burn-ndarray that read their operands through strides, forward and backward.
//!
//! burn-ndarray's matmul first reshapes both operands to contiguous `[batch, rows, cols]` arrays, so every
//! operand that is a view is copied before gemm packs it once more: the heads of attention (`[B, L, H, D]`
//! seen as `[B, H, L, D]`), every transposed operand of a backward product (`Wᵀ`, `xᵀ`, `Kᵀ`, `Vᵀ`), every
//! weight broadcast over a batch. In a U-Net training step those copies cost more than the products
//! (bench/NOTES.md). Here matrixmultiply's gemm gets the arrays' own strides instead:
//!
//! ```text
//! out[i] = lhs[i] · rhs[i]                    over the broadcast batch index i (a size-1 batch dim repeats)
//! backward:  dlhs = Σ dout · rhsᵀ,   drhs = Σ lhsᵀ · dout
//! ```
//!
//! where each sum runs over the batch indices an operand was broadcast along, added in gemm's accumulator
//! (β = 1) rather than materialised per batch and reduced afterwards. rayon's threads split the output
//! matrices, and each matrix into bands of rows or columns where the batch is smaller than the pool, never a
//! sum, so results do not depend on the thread count. gemm itself should run single-threaded
//! ([`use_rayon_threads_only`]): its own pool would compete with rayon's for the same cores.

use std::marker::PhantomData;

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use rayon::prelude::*;

use super::cpu_conv::{Real, recast};

/// Makes matrixmultiply's gemm single-threaded, so that the products' threads are rayon's alone: [`product`]
/// splits the work over rayon's pool, and burn-ndarray's matmul splits its batch there too. With gemm's own
/// pool as well, a product ran on up to twice as many threads as cores, and two products side by side (two
/// training workers) on four (bench/NOTES.md, "One pool of threads").
///
/// # Safety
/// Sets an environment variable: call before any other thread exists and before the first product (gemm
/// reads `MATMUL_NUM_THREADS` once).
pub unsafe fn use_rayon_threads_only() {
    // SAFETY: forwarded from the caller.
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
}

/// A batch of matrices as an ndarray view holds it: the first element and each dim's size and stride
/// (in elements, possibly 0 for a broadcast dim or negative).
pub struct Strided<'a, E> {
    first: *const E,
    shape: Vec<usize>,
    strides: Vec<isize>,
    life: PhantomData<&'a E>,
}

// SAFETY: a `Strided` only reads the `E`s of a view that outlives it.
unsafe impl<E: Sync> Sync for Strided<'_, E> {}

impl<'a, E> Strided<'a, E> {
    /// `data` as one row-major `rows × cols` matrix.
    pub(super) fn rows(data: &'a [E], rows: usize, cols: usize) -> Self {
        assert!(
            data.len() >= rows * cols,
            "a {rows} × {cols} matrix from {} values",
            data.len()
        );
        // SAFETY: the `rows × cols` elements lie inside `data`, borrowed for `'a`.
        unsafe { Self::new(data.as_ptr(), &[rows, cols], &[cols as isize, 1]) }
    }

    /// # Safety
    /// Every element addressed by `shape` and `strides` from `first` is an initialised `E` that lives as
    /// long as the returned value.
    pub unsafe fn new(first: *const E, shape: &[usize], strides: &[isize]) -> Self {
        Self {
            first,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            life: PhantomData,
        }
    }

    /// The same elements with the two matrix dims swapped: the transposed matrices, at no cost.
    pub(super) fn transposed(mut self) -> Self {
        let rank = self.shape.len();
        self.shape.swap(rank - 2, rank - 1);
        self.strides.swap(rank - 2, rank - 1);
        self
    }

    /// The elements in row-major order, copied one innermost row at a time (a plain slice copy where that
    /// dim is adjacent in memory): ndarray's own copy of a view walks a dynamic-rank index per element.
    pub(super) fn to_row_major(&self) -> Vec<E>
    where
        E: Copy,
    {
        let rank = self.shape.len();
        let Some(&width) = self.shape.last() else {
            // SAFETY: a rank-0 view addresses its one element.
            return vec![unsafe { *self.first }];
        };
        let step = self.strides[rank - 1];
        let mut out = Vec::with_capacity(self.shape.iter().product());
        let rows = out.capacity() / width.max(1);
        for row in 0..rows {
            let mut rest = row;
            let mut offset = 0isize;
            for dim in (0..rank - 1).rev() {
                offset += (rest % self.shape[dim]) as isize * self.strides[dim];
                rest /= self.shape[dim];
            }
            let first = self.first.wrapping_offset(offset);
            // SAFETY: every index inside the shape addresses an element of the view (`new`'s contract).
            unsafe {
                if step == 1 {
                    out.extend_from_slice(std::slice::from_raw_parts(first, width));
                } else {
                    out.extend((0..width).map(|i| *first.wrapping_offset(i as isize * step)));
                }
            }
        }
        out
    }

    /// The first element of batch `index`, a size-1 dim repeating along the others.
    fn matrix(&self, index: &[usize]) -> (*const E, isize, isize) {
        let offset: isize = index
            .iter()
            .enumerate()
            .filter(|&(dim, _)| self.shape[dim] > 1)
            .map(|(dim, &i)| i as isize * self.strides[dim])
            .sum();
        let rank = self.shape.len();
        (
            self.first.wrapping_offset(offset),
            self.strides[rank - 2],
            self.strides[rank - 1],
        )
    }
}

/// `lhs · rhs` over the broadcast batch dims, each product added into the batch index of `into` it falls
/// on: `into` has the broadcast batch shape, with 1 along the dims to sum over. Returns `[into…, m, n]`.
pub(super) fn product<E: Real>(
    lhs: &Strided<E>,
    rhs: &Strided<E>,
    into: &[usize],
) -> (Vec<E>, Vec<usize>) {
    let rank = lhs.shape.len();
    let batch = rank - 2;
    let (m, k, n) = (lhs.shape[batch], lhs.shape[batch + 1], rhs.shape[batch + 1]);
    assert!(
        rhs.shape.len() == rank && rhs.shape[batch] == k && into.len() == batch,
        "matmul of {:?} by {:?} into {into:?}",
        lhs.shape,
        rhs.shape
    );
    let broadcast = broadcast_batch(lhs, rhs);
    let summed: Vec<usize> = (0..batch)
        .filter(|&d| into[d] == 1 && broadcast[d] > 1)
        .collect();
    let terms: usize = summed.iter().map(|&d| broadcast[d]).product();
    let shape: Vec<usize> = into.iter().copied().chain([m, n]).collect();
    let mut out = vec![E::default(); shape.iter().product()];
    if m * n == 0 {
        return (out, shape);
    }
    let tiles = Tiles::of(out.len() / (m * n), m, k, n);
    let one_tile = |target: usize, tile: usize, dst: Output<E>| {
        let mut index = unravel(target, into);
        let (rows, cols) = tiles.span(tile);
        for term in 0..terms {
            let mut rest = term;
            for &d in summed.iter().rev() {
                index[d] = rest % broadcast[d];
                rest /= broadcast[d];
            }
            let (a, b) = (lhs.matrix(&index), rhs.matrix(&index));
            // SAFETY: every batch index lies inside both operands' shapes (a size-1 dim reads its only
            // matrix), and the tile's rows and columns inside the matrices, so gemm addresses their own
            // elements; `dst` is this target's m × n row-major outputs, and no other task writes this tile.
            unsafe {
                E::gemm(
                    rows.len(),
                    k,
                    cols.len(),
                    (a.0.wrapping_offset(rows.start as isize * a.1), a.1, a.2),
                    (b.0.wrapping_offset(cols.start as isize * b.2), b.1, b.2),
                    (dst.0.add(rows.start * n + cols.start), n as isize),
                    term > 0,
                )
            };
        }
    };
    out.par_chunks_mut(m * n)
        .enumerate()
        .for_each(|(target, dst)| {
            let dst = Output(dst.as_mut_ptr());
            (0..tiles.count)
                .into_par_iter()
                .for_each(|tile| one_tile(target, tile, dst));
        });
    (out, shape)
}

/// The first element of one output matrix, shared by the tasks that write its disjoint tiles.
#[derive(Clone, Copy)]
struct Output<E>(*mut E);

// SAFETY: the tasks holding an `Output` write disjoint tiles of a buffer that outlives them.
unsafe impl<E: Send> Send for Output<E> {}
unsafe impl<E: Send> Sync for Output<E> {}

/// How each output matrix is cut for the threads: into `count` bands of `size` rows (or columns, where the
/// matrix is wider than tall). Cut only when the batch alone has fewer matrices than rayon has threads, and
/// only where a band is still worth a gemm call. Each output element is the same sum in the same order
/// whatever the cut (gemm's depth blocks do not depend on it), so results do not depend on the thread count.
struct Tiles {
    along_rows: bool,
    size: usize,
    count: usize,
    m: usize,
    n: usize,
}

impl Tiles {
    /// A band is at least this many rows or columns (twice gemm's 8-wide register tiles).
    const NARROWEST: usize = 16;
    /// Below this many multiply-adds a product is not split: a task costs more than it saves.
    const SMALLEST: usize = 1 << 16;

    fn of(batch: usize, m: usize, k: usize, n: usize) -> Self {
        let along_rows = m >= n;
        let length = m.max(n);
        let wanted = rayon::current_num_threads().div_ceil(batch.max(1));
        let size = if wanted <= 1 || m * k * n < Self::SMALLEST {
            length
        } else {
            length
                .div_ceil(wanted)
                .next_multiple_of(Self::NARROWEST)
                .min(length)
        };
        Self {
            along_rows,
            size,
            count: length.div_ceil(size),
            m,
            n,
        }
    }

    /// The rows and columns of band `tile`.
    fn span(&self, tile: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let length = if self.along_rows { self.m } else { self.n };
        let band = tile * self.size..((tile + 1) * self.size).min(length);
        if self.along_rows {
            (band, 0..self.n)
        } else {
            (0..self.m, band)
        }
    }
}

/// The batch shape of `lhs · rhs`: each batch dim the larger of the two (the other is 1 or equal).
fn broadcast_batch<E>(lhs: &Strided<E>, rhs: &Strided<E>) -> Vec<usize> {
    batch_of(&lhs.shape)
        .iter()
        .zip(batch_of(&rhs.shape))
        .map(|(&x, &y)| x.max(y))
        .collect()
}

/// The multi-index of `flat` in a row-major array of `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &size) in index.iter_mut().zip(shape).rev() {
        *i = flat % size.max(1);
        flat /= size.max(1);
    }
    index
}

/// The batch dims of `shape` (all but the last two).
fn batch_of(shape: &[usize]) -> &[usize] {
    &shape[..shape.len() - 2]
}

/// `values` (row-major) as an `NdArray<E>` tensor of `shape`.
pub(super) fn float_tensor<E: Real>(
    values: Vec<E>,
    shape: impl Into<burn::tensor::Shape>,
) -> FloatTensor<E::Cpu> {
    E::Cpu::float_from_data(
        burn::tensor::TensorData::new(values, shape),
        &Default::default(),
    )
}

/// `lhs · rhs` on `NdArray<E>`; burn's own matmul for a tensor of another dtype.
fn plain<E: Real>(lhs: FloatTensor<E::Cpu>, rhs: FloatTensor<E::Cpu>) -> FloatTensor<E::Cpu> {
    let (Some(a), Some(b)) = (E::strided(&lhs), E::strided(&rhs)) else {
        return E::Cpu::float_matmul(lhs, rhs);
    };
    let (values, shape) = product(&a, &b, &broadcast_batch(&a, &b));
    float_tensor::<E>(values, shape)
}

type Erased<B> = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;

fn plain_as<B: Backend, E: Real>(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> FloatTensor<B> {
    recast(plain::<E>(recast(lhs), recast(rhs)))
}

/// `f`, where backend `B` is `K`.
fn when<B: Backend, K: Backend>(f: Erased<B>) -> Option<Erased<B>> {
    (std::any::TypeId::of::<B>() == std::any::TypeId::of::<K>()).then_some(f)
}

/// `f32_kernel` or `f64_kernel`, where backend `B` is plain `NdArray<f32>` or `NdArray<f64>` (no autodiff).
pub(super) fn for_plain_ndarray<B: Backend, F>(f32_kernel: F, f64_kernel: F) -> Option<F> {
    let id = std::any::TypeId::of::<B>();
    if id == std::any::TypeId::of::<NdArray<f32>>() {
        Some(f32_kernel)
    } else if id == std::any::TypeId::of::<NdArray<f64>>() {
        Some(f64_kernel)
    } else {
        None
    }
}

/// Whether backend `B` is plain ndarray, where the inference kernels (fused softmax, bias, pooling) run.
pub fn runs_plain_on<B: Backend>() -> bool {
    for_plain_ndarray::<B, ()>((), ()).is_some()
}

/// These kernels for backend `B`, if it is ndarray (f32 or f64; with autodiff where the feature is on).
fn kernel_for<B: Backend>() -> Option<Erased<B>> {
    let plain = for_plain_ndarray::<B, Erased<B>>(plain_as::<B, f32>, plain_as::<B, f64>);
    #[cfg(feature = "autodiff")]
    let plain = plain.or_else(autodiff_op::kernel_for::<B>);
    plain
}

/// Whether these kernels run on backend `B`.
pub fn runs_on<B: Backend>() -> bool {
    kernel_for::<B>().is_some()
}

/// `lhs.matmul(rhs)` with these kernels, or the operands back where they do not run.
#[allow(clippy::type_complexity)]
pub fn matmul<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    use burn::tensor::TensorPrimitive;
    let Some(kernel) = kernel_for::<B>() else {
        return Err((lhs, rhs));
    };
    let [lhs, rhs] = [lhs, rhs].map(|t| t.into_primitive().tensor());
    Ok(Tensor::from_primitive(TensorPrimitive::Float(kernel(
        lhs, rhs,
    ))))
}

/// `x · weight + bias` on plain ndarray, the bias added to each row of the product's own buffer (burn's
/// broadcast add allocates a new array and walks both through its iterator): the same two roundings as
/// `matmul` then `+`, so burn's values bit for bit. `x` back elsewhere (autodiff included).
pub fn linear_with_bias<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    use burn::tensor::TensorPrimitive;
    type Kernel<B> = fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> Option<FloatTensor<B>>;
    fn via<B: Backend, E: Real>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        bias: FloatTensor<B>,
    ) -> Option<FloatTensor<B>> {
        let (x, weight, bias) = (recast(x), recast(weight), recast(bias));
        let (a, b) = (E::strided(&x)?, E::strided(&weight)?);
        let bias = E::contiguous(&bias)?;
        let mut b = b;
        // The weight `[in, out]` as a batch of one, broadcast over x's batch dims.
        let ones = a.shape.len() - 2;
        b.shape.splice(0..0, std::iter::repeat_n(1, ones));
        b.strides.splice(0..0, std::iter::repeat_n(0, ones));
        let (mut out, shape) = product(&a, &b, batch_of(&a.shape));
        if !bias.is_empty() {
            out.par_chunks_mut(bias.len()).for_each(|row| {
                row.iter_mut()
                    .zip(bias)
                    .for_each(|(value, &add)| *value += add)
            });
        }
        Some(recast(float_tensor::<E>(out, shape)))
    }
    let Some(kernel) = for_plain_ndarray::<B, Kernel<B>>(via::<B, f32>, via::<B, f64>) else {
        return Err(x);
    };
    let primitive = |t: Tensor<B, 2>| t.into_primitive().tensor();
    match kernel(
        x.clone().into_primitive().tensor(),
        primitive(weight),
        bias.into_primitive().tensor(),
    ) {
        Some(out) => Ok(Tensor::from_primitive(TensorPrimitive::Float(out))),
        None => Err(x),
    }
}

/// `softmax(scale · lhs · rhs)` along the last dim on plain ndarray, or the operands back elsewhere (autodiff
/// included). The product's own buffer is scaled and normalised in place, one row per task, in the order of
/// burn's `mul_scalar` then `softmax` (row max, shift, exp, ndarray's eight-way sum, divide): burn's values bit
/// for bit, in one pass over the scores where burn makes six, each into a new array.
#[allow(clippy::type_complexity)]
pub fn softmax_of_product<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
    scale: f64,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    use burn::tensor::TensorPrimitive;
    type Kernel<B> = fn(FloatTensor<B>, FloatTensor<B>, f64) -> Option<FloatTensor<B>>;
    fn via<B: Backend, E: Real>(
        lhs: FloatTensor<B>,
        rhs: FloatTensor<B>,
        scale: f64,
    ) -> Option<FloatTensor<B>> {
        let (lhs, rhs) = (recast(lhs), recast(rhs));
        let (a, b) = (E::strided(&lhs)?, E::strided(&rhs)?);
        let (mut scores, shape) = product(&a, &b, &broadcast_batch(&a, &b));
        let row = shape[shape.len() - 1];
        if row > 0 {
            scores
                .par_chunks_mut(row)
                .for_each(|row| softmax_row(row, E::of_f64(scale)));
        }
        Some(recast(float_tensor::<E>(scores, shape)))
    }
    let Some(kernel) = for_plain_ndarray::<B, Kernel<B>>(via::<B, f32>, via::<B, f64>) else {
        return Err((lhs, rhs));
    };
    let (l, r) = (lhs.clone(), rhs.clone());
    let [a, b] = [lhs, rhs].map(|t| t.into_primitive().tensor());
    match kernel(a, b, scale) {
        Some(out) => Ok(Tensor::from_primitive(TensorPrimitive::Float(out))),
        None => Err((l, r)),
    }
}

/// `row ← softmax(scale · row)`, with burn-ndarray's operations in burn's order.
fn softmax_row<E: Real>(row: &mut [E], scale: E) {
    row.iter_mut().for_each(|x| *x = *x * scale);
    let max = row
        .iter()
        .fold(row[0], |max, &x| if x > max { x } else { max });
    row.iter_mut().for_each(|x| *x = (*x - max).exp());
    let sum = eightfold_sum(row);
    row.iter_mut().for_each(|x| *x = *x / sum);
}

/// The sum of `values` as ndarray's `sum` adds a contiguous lane: eight running sums, combined pairwise, then
/// the last few values.
pub(super) fn eightfold_sum<E: Real>(mut values: &[E]) -> E {
    let mut lanes = [E::default(); 8];
    while values.len() >= 8 {
        lanes
            .iter_mut()
            .zip(values)
            .for_each(|(lane, &x)| *lane += x);
        values = &values[8..];
    }
    let mut sum = E::default();
    for i in 0..4 {
        let mut pair = lanes[i];
        pair += lanes[i + 4];
        sum += pair;
    }
    values.iter().for_each(|&x| sum += x);
    sum
}

#[cfg(feature = "autodiff")]
mod autodiff_op {
    use burn::backend::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::{
        BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
    };
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};

    use super::*;

    pub(super) fn kernel_for<B: Backend>() -> Option<Erased<B>> {
        when::<B, Autodiff<NdArray<f32>, NoCheckpointing>>(tracked_as::<B, f32, NoCheckpointing>)
            .or_else(|| {
                when::<B, Autodiff<NdArray<f32>, BalancedCheckpointing>>(
                    tracked_as::<B, f32, BalancedCheckpointing>,
                )
            })
            .or_else(|| {
                when::<B, Autodiff<NdArray<f64>, NoCheckpointing>>(
                    tracked_as::<B, f64, NoCheckpointing>,
                )
            })
            .or_else(|| {
                when::<B, Autodiff<NdArray<f64>, BalancedCheckpointing>>(
                    tracked_as::<B, f64, BalancedCheckpointing>,
                )
            })
    }

    fn tracked_as<B: Backend, E: Real, C: CheckpointStrategy>(
        lhs: FloatTensor<B>,
        rhs: FloatTensor<B>,
    ) -> FloatTensor<B> {
        recast(tracked::<E, C>(recast(lhs), recast(rhs)))
    }

    /// The product on `Autodiff<NdArray<E>, C>`: [`plain`] forward, [`MatmulBackward`] on the tape, which
    /// keeps each operand only where the other one's gradient needs it (a frozen weight keeps no input).
    fn tracked<E: Real, C: CheckpointStrategy>(
        lhs: FloatTensor<Autodiff<E::Cpu, C>>,
        rhs: FloatTensor<Autodiff<E::Cpu, C>>,
    ) -> FloatTensor<Autodiff<E::Cpu, C>> {
        use burn::tensor::TensorMetadata;
        let shapes = [lhs.shape().to_vec(), rhs.shape().to_vec()];
        let (lhs_tracked, rhs_tracked) = (lhs.is_tracked(), rhs.is_tracked());
        let out = plain::<E>(lhs.primitive.clone(), rhs.primitive.clone());
        let backward = MatmulBackward::<E>(shapes, PhantomData);
        match backward
            .prepare::<C>([lhs.node.clone(), rhs.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = [
                    rhs_tracked.then_some(lhs.primitive),
                    lhs_tracked.then_some(rhs.primitive),
                ];
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    /// `a · bᵀ` (or `aᵀ · b` where `transpose_a`), summed over the batch dims along which an operand of
    /// `shape` was broadcast: one operand's gradient. burn's ops where a tensor has another dtype than `E`
    /// (a process that switched burn's default float type).
    fn gradient<E: Real>(
        a: &FloatTensor<E::Cpu>,
        b: &FloatTensor<E::Cpu>,
        transpose_a: bool,
        shape: Vec<usize>,
    ) -> FloatTensor<E::Cpu> {
        if let (Some(sa), Some(sb)) = (E::strided(a), E::strided(b)) {
            let (sa, sb) = if transpose_a {
                (sa.transposed(), sb)
            } else {
                (sa, sb.transposed())
            };
            let (values, shape) = product(&sa, &sb, batch_of(&shape));
            return float_tensor::<E>(values, shape);
        }
        let last = shape.len() - 1;
        let (a, b) = if transpose_a {
            (
                E::Cpu::float_swap_dims(a.clone(), last - 1, last),
                b.clone(),
            )
        } else {
            (
                a.clone(),
                E::Cpu::float_swap_dims(b.clone(), last - 1, last),
            )
        };
        let mut grad = E::Cpu::float_matmul(a, b);
        for (dim, &size) in batch_of(&shape).iter().enumerate() {
            if size == 1 {
                grad = E::Cpu::float_sum_dim(grad, dim);
            }
        }
        grad
    }

    /// The operands' shapes.
    #[derive(Debug)]
    struct MatmulBackward<E>([Vec<usize>; 2], PhantomData<E>);

    impl<E: Real> Backward<E::Cpu, 2> for MatmulBackward<E> {
        /// The left operand where the right one is tracked, and the other way round.
        type State = [Option<FloatTensor<E::Cpu>>; 2];

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<E::Cpu>(&ops.node);
            let [lhs, rhs] = ops.state;
            let [lhs_shape, rhs_shape] = self.0;
            let [lhs_node, rhs_node] = ops.parents;
            let kept = "kept for the other operand's gradient";
            if let Some(node) = lhs_node {
                let rhs = rhs.expect(kept);
                let grad = gradient::<E>(&grad, &rhs, false, lhs_shape);
                grads.register::<E::Cpu>(node.id, grad);
            }
            if let Some(node) = rhs_node {
                let lhs = lhs.expect(kept);
                let grad = gradient::<E>(&lhs, &grad, true, rhs_shape);
                grads.register::<E::Cpu>(node.id, grad);
            }
        }
    }
}
