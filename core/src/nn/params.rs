//! Parameters by their checkpoint path: stable ids (so optimiser state saved in one process matches the
//! parameters of the next) and a walk over (path, tensor) pairs.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::FloatDType;

/// The checkpoint key of a parameter path: enum variant segments (`Linear`, `Conv`) dropped, as burn-store
/// does with `skip_enum_variants`.
pub fn checkpoint_key(path: &[String]) -> String {
    let segments: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .filter(|s| !s.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    segments.join(".")
}

/// FNV-1a: a fixed hash (std's `DefaultHasher` may change between Rust releases).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Gives every parameter the id `hash(path)`, so two processes building the same model agree on ids.
pub fn stable_param_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct Mapper(Vec<String>);
    impl<B: Backend> ModuleMapper<B> for Mapper {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, tensor, mapper) = param.consume();
            Param::from_mapped_value(
                ParamId::from(fnv1a(&checkpoint_key(&self.0))),
                tensor,
                mapper,
            )
        }
    }
    module.map(&mut Mapper(Vec::new()))
}

/// Every float parameter as (checkpoint key, data) — for inspection and tests; `D` is erased.
pub fn param_data<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, burn::tensor::TensorData)> {
    struct Visitor(Vec<String>, Vec<(String, burn::tensor::TensorData)>);
    impl<B: Backend> ModuleVisitor<B> for Visitor {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.1
                .push((checkpoint_key(&self.0), param.val().into_data()));
        }
    }
    let mut visitor = Visitor(Vec::new(), Vec::new());
    module.visit(&mut visitor);
    visitor.1
}

/// The module with every float parameter cast to `dtype`, keeping the parameter ids (so gradients computed
/// through the copy are found on the original by `GradientsParams::from_grads`).
pub fn cast_params<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    module.map(&mut CastParams {
        dtype,
        frozen_only: false,
    })
}

/// The module with the parameters that take no gradient cast to `dtype`; trained ones stay as they are.
pub fn cast_frozen_params<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    module.map(&mut CastParams {
        dtype,
        frozen_only: true,
    })
}

struct CastParams {
    dtype: FloatDType,
    /// Leave the parameters that take a gradient as they are.
    frozen_only: bool,
}

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.frozen_only && tensor.is_require_grad() {
            true => tensor,
            false => tensor.cast(self.dtype),
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}
