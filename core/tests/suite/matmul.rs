//! `nn::matmul::apply` on ndarray runs `nn::cpu_matmul` (gemm on the arrays' own strides, with its own
//! backward), and equals burn's matmul, values and both gradients, for the operands the models pass it:
//! contiguous, head-split and transposed views, an expanded (stride 0) operand, batch dims broadcast from
//! either side; with and without gradient checkpointing, in f32 and f64; and with a frozen operand, which
//! gets no gradient.

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::nn::{cpu_matmul, matmul};

fn max_abs<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f64 {
    (a - b).abs().max().into_scalar().elem()
}

fn normal<B: Backend, const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// Operand pairs `[.., m, k]` · `[.., k, n]` and what they exercise.
fn cases<B: Backend>() -> Vec<(&'static str, Tensor<B, 4>, Tensor<B, 4>)> {
    vec![
        ("contiguous", normal([2, 3, 4, 5]), normal([2, 3, 5, 6])),
        (
            "heads split from [B, L, H, D] and a transposed right operand",
            normal([2, 4, 3, 5]).swap_dims(1, 2),
            normal([2, 3, 6, 5]).swap_dims(2, 3),
        ),
        (
            "batch dims broadcast from both sides",
            normal([2, 1, 4, 5]),
            normal([1, 3, 5, 6]),
        ),
        (
            "a weight broadcast over the batch, as a linear layer's",
            normal([2, 3, 7, 5]),
            normal([1, 1, 5, 6]),
        ),
        (
            "an expanded operand (stride 0)",
            normal([1, 3, 4, 5]).expand([2, 3, 4, 5]),
            normal([2, 3, 5, 6]),
        ),
        (
            "a transposed left operand with single rows",
            normal([1, 1, 9, 1]).swap_dims(2, 3),
            normal([1, 1, 9, 2]),
        ),
    ]
}

/// Max errors of values and of the two gradients against burn's matmul; a gradient neither computes is 0.
fn errors<B: AutodiffBackend>(lhs: Tensor<B, 4>, rhs: Tensor<B, 4>) -> [f64; 3] {
    let ours = matmul::apply(lhs.clone(), rhs.clone());
    let burns = lhs.clone().matmul(rhs.clone());
    // A weighted sum, so that every output has its own gradient.
    let probe = normal::<B, 4>(ours.dims());
    let g_ours = (ours.clone() * probe.clone()).sum().backward();
    let g_burn = (burns.clone() * probe).sum().backward();
    let gradient_error = |t: &Tensor<B, 4>| match (t.grad(&g_ours), t.grad(&g_burn)) {
        (Some(a), Some(b)) => max_abs(a, b),
        (None, None) => 0.0,
        (a, b) => panic!(
            "gradient in ours: {}, in burn's: {}",
            a.is_some(),
            b.is_some()
        ),
    };
    [
        max_abs(ours.inner(), burns.inner()),
        gradient_error(&lhs),
        gradient_error(&rhs),
    ]
}

fn check<B: AutodiffBackend>(name: &str, bound: f64) {
    assert!(
        cpu_matmul::runs_on::<B>() && cpu_matmul::runs_on::<B::InnerBackend>(),
        "{name}"
    );
    for (case, lhs, rhs) in cases::<B>() {
        let [value, d_lhs, d_rhs] = errors(lhs.clone().require_grad(), rhs.clone().require_grad());
        println!("{name}, {case}: values {value:.1e}, dlhs {d_lhs:.1e}, drhs {d_rhs:.1e}");
        assert!(
            value < bound && d_lhs < bound && d_rhs < bound,
            "{name}, {case}"
        );
        // A frozen operand gets no gradient, and the other's is still burn's.
        let [_, d_lhs, d_rhs] = errors(lhs.clone().require_grad(), rhs.clone());
        assert!(
            d_lhs < bound && d_rhs == 0.0,
            "{name}, {case}: frozen right"
        );
        let [_, d_lhs, d_rhs] = errors(lhs.clone(), rhs.clone().require_grad());
        assert!(d_lhs == 0.0 && d_rhs < bound, "{name}, {case}: frozen left");
        // Inference on the inner backend equals burn's too.
        let (lhs, rhs) = (lhs.inner(), rhs.inner());
        let plain = max_abs(matmul::apply(lhs.clone(), rhs.clone()), lhs.matmul(rhs));
        assert!(plain < bound, "{name}, {case}: inference {plain:.1e}");
    }
}

#[test]
fn cpu_kernels_match_burn_matmul_values_and_gradients_f32() {
    check::<Autodiff<NdArray<f32>>>("f32", 1e-5);
    check::<Autodiff<NdArray<f32>, BalancedCheckpointing>>("f32, balanced checkpointing", 1e-5);
}

/// Its own test (nextest: its own process): burn's default float dtype is process-wide.
#[test]
fn cpu_kernels_match_burn_matmul_values_and_gradients_f64() {
    check::<Autodiff<NdArray<f64>>>("f64", 1e-12);
}

/// `matmul::linear` is `burn::tensor::module::linear`: a `[in, out]` weight over a batch of token rows, with
/// and without bias, and with the base weight frozen as under LoRA.
#[test]
fn linear_matches_burns_linear() {
    type B = Autodiff<NdArray<f64>>;
    let x = normal::<B, 3>([2, 7, 5]).require_grad();
    let weight = normal::<B, 2>([5, 6]);
    let bias = normal::<B, 1>([6]).require_grad();
    for weight in [weight.clone().require_grad(), weight] {
        let ours = matmul::linear(x.clone(), weight.clone(), Some(bias.clone()));
        let burns = burn::tensor::module::linear(x.clone(), weight.clone(), Some(bias.clone()));
        let probe = normal::<B, 3>(ours.dims());
        let g_ours = (ours.clone() * probe.clone()).sum().backward();
        let g_burn = (burns.clone() * probe).sum().backward();
        assert!(max_abs(ours.inner(), burns.inner()) < 1e-12);
        assert!(max_abs(x.grad(&g_ours).unwrap(), x.grad(&g_burn).unwrap()) < 1e-12);
        assert!(max_abs(bias.grad(&g_ours).unwrap(), bias.grad(&g_burn).unwrap()) < 1e-12);
        match (weight.grad(&g_ours), weight.grad(&g_burn)) {
            (Some(a), Some(b)) => assert!(max_abs(a, b) < 1e-12),
            (None, None) => {}
            _ => panic!("the weight's gradient exists in one of the two only"),
        }
    }
}

/// On plain ndarray `matmul::linear` adds the bias inside its own output buffer and gives burn's `linear` bit
/// for bit: token rows, a transposed input, a single row, and 300 input features (more than gemm's 256-deep
/// blocks).
#[test]
fn inference_linear_is_burns_bit_for_bit() {
    type B = NdArray<f32>;
    for (x, d_in) in [
        (normal::<B, 3>([2, 7, 5]), 5),
        (normal::<B, 3>([2, 5, 7]).swap_dims(1, 2), 5),
        (normal::<B, 3>([1, 1, 300]), 300),
        (normal::<B, 3>([3, 4, 300]), 300),
    ] {
        let (weight, bias) = (normal::<B, 2>([d_in, 6]), normal::<B, 1>([6]));
        let ours = matmul::linear(x.clone(), weight.clone(), Some(bias.clone())).into_data();
        let burns = burn::tensor::module::linear(x, weight, Some(bias)).into_data();
        assert_eq!(ours.shape, burns.shape);
        assert_eq!(ours.as_bytes(), burns.as_bytes(), "{d_in} input features");
    }
}

/// With fewer matrices than threads, `cpu_matmul` cuts each output matrix into bands of rows (taller than
/// wide) or columns (wider than tall), one per thread; gemm's sums do not depend on the cut, so values and
/// gradients stay burn's bit for bit. Run in a pool of 4 threads, whatever the suite's own thread count.
#[test]
fn products_cut_into_bands_are_burns_bit_for_bit() {
    type B = Autodiff<NdArray<f32>>;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    pool.install(|| {
        for (name, lhs, rhs) in [
            (
                "row bands",
                normal::<B, 4>([1, 1, 200, 300]),
                normal([1, 1, 300, 40]),
            ),
            (
                "column bands, transposed right operand",
                normal::<B, 4>([1, 1, 24, 300]),
                normal::<B, 4>([1, 1, 500, 300]).swap_dims(2, 3),
            ),
            (
                "a weight broadcast over two matrices, its gradient summed in bands",
                normal::<B, 4>([2, 1, 90, 70]),
                normal([1, 1, 70, 130]),
            ),
        ] {
            let (lhs, rhs) = (lhs.require_grad(), rhs.require_grad());
            let (x, y) = (lhs.clone().inner(), rhs.clone().inner());
            let ours = matmul::apply(x.clone(), y.clone()).into_data();
            let burns = x.matmul(y).into_data();
            assert_eq!(ours.as_bytes(), burns.as_bytes(), "{name}: values");
            assert_eq!(errors(lhs, rhs), [0.0; 3], "{name}: values and gradients");
        }
    });
}
