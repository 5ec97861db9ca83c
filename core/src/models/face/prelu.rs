//! `torch.nn.PReLU(num_parameters)`, with its parameter named `weight` as in the checkpoint.
//!
//! burn's own `PRelu` calls the slope `alpha`, and burn-store's PyTorch adapter does not rename it, so
//! every `preluN.weight` key of the MTCNN files would need a remap (and load errors would name a key the
//! file does not have). The forward is burn's `prelu`: `max(0, x) + weight[c]·min(0, x)` over channel dim 1.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::prelu;

#[derive(Module, Debug)]
pub struct PRelu<B: Backend> {
    /// One slope per channel, `[C]`.
    pub weight: Param<Tensor<B, 1>>,
}

impl<B: Backend> PRelu<B> {
    /// PyTorch's initial slope, 0.25 (the real values come from the checkpoint).
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::full([channels], 0.25, device)),
        }
    }

    /// `x` is `[N, C, …]`; the slopes act on dim 1.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        prelu(x, self.weight.val())
    }
}
