//! Parameter utilities over a whole module: global-norm clipping with a scale (for accumulation), and
//! forcing burn's lazy initialisation.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Multiplies all gradients by `scale`, then clips their global L2 norm to `max_norm` (as
/// `torch.nn.utils.clip_grad_norm_`). Returns the gradients and the norm before clipping.
pub fn scale_and_clip<B: AutodiffBackend, M: AutodiffModule<B>>(
    mut grads: GradientsParams,
    module: &M,
    scale: f64,
    max_norm: f64,
) -> (GradientsParams, f64) {
    struct Norm<'a>(&'a GradientsParams, f64);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.0.get::<B::InnerBackend, D>(param.id) {
                self.1 += g.powf_scalar(2.0).sum().into_scalar().elem::<f64>();
            }
        }
    }
    struct Scale<'a>(&'a mut GradientsParams, f64);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.0.remove::<B::InnerBackend, D>(param.id) {
                self.0.register::<B::InnerBackend, D>(param.id, g * self.1);
            }
        }
    }
    let mut norm = Norm(&grads, 0.0);
    module.visit(&mut norm);
    let total = norm.1.sqrt() * scale;
    // torch: clip_coef = max_norm / (total_norm + 1e-6), applied only when below 1.
    let clip = (max_norm / (total + 1e-6)).min(1.0);
    module.visit(&mut Scale(&mut grads, scale * clip));
    (grads, total)
}

/// Initialises every lazily initialised parameter of `module` now.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}
