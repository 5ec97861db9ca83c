//! `nn::pool::adaptive_avg_pool2d` on plain ndarray runs `nn::cpu_pool` and gives burn's adaptive average
//! pooling bit for bit: shrinking by whole and fractional factors (overlapping windows), to 1×1, the identity,
//! enlarging, on a contiguous and on a transposed input, in f32 and f64.

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::Distribution;
use popalign_core::nn::pool;

fn check<B: Backend>() {
    let device = Default::default();
    let x = Tensor::<B, 4>::random([2, 3, 37, 53], Distribution::Normal(0.0, 1.0), &device);
    for input in [x.clone(), x.swap_dims(2, 3)] {
        let [_, _, h, w] = input.dims();
        for size in [[12, 12], [5, 7], [1, 1], [h, w], [h + 13, w + 5]] {
            let ours = pool::adaptive_avg_pool2d(input.clone(), size).into_data();
            let burns = burn::tensor::module::adaptive_avg_pool2d(input.clone(), size).into_data();
            assert_eq!(ours.shape, burns.shape);
            assert_eq!(ours.as_bytes(), burns.as_bytes(), "{size:?} from {h}×{w}");
        }
    }
}

#[test]
fn cpu_pooling_is_burns_bit_for_bit_f32() {
    check::<NdArray<f32>>();
}

/// Its own test (nextest: its own process): burn's default float dtype is process-wide.
#[test]
fn cpu_pooling_is_burns_bit_for_bit_f64() {
    check::<NdArray<f64>>();
}
