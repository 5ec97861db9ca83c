#![allow(non_snake_case)]
//! A linear layer that can carry a LoRA adapter, in peft's layout: `y = x·Wᵀ + b + (α/r)·B(A(x))` with
//! `lora_A` `[r, in]` and `lora_B` `[out, r]`. peft's "gaussian" init: A ~ N(0, 1/r), B = 0, so a fresh
//! adapter leaves the output unchanged.
//!
//! The struct is named `Linear` on purpose: burn-store's PyTorch adapter recognises containers named
//! `Linear` and transposes their `weight`, so the checkpoint keys (`to_q.weight`) and the diffusers LoRA keys
//! (`to_q.lora_A.weight`) both load without remapping.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Initializer, LinearConfig};
use burn::prelude::*;

use super::matmul::linear;

/// Which linear layers get adapters, and their size.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Module names as peft matches them: `to_q`, `to_k`, `to_v`, `to_out.0`, `proj_in`, `proj_out`,
    /// `ff.net.0.proj`, `ff.net.2`.
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
}

fn default_targets() -> Vec<String> {
    ["to_q", "to_k", "to_v", "to_out.0"]
        .map(String::from)
        .to_vec()
}

impl LoraConfig {
    pub fn new(rank: usize, alpha: f64) -> Self {
        Self {
            rank,
            alpha,
            targets: default_targets(),
        }
    }

    /// The adapter layout of a diffusers/peft LoRA file: targets from its keys, rank from `lora_A`.
    /// Files without adapter metadata mean α = rank (scale 1), as diffusers reads them.
    pub fn from_file(file: &std::path::Path) -> Result<Self, crate::io::load::LoadError> {
        const KNOWN: [&str; 8] = [
            "to_q",
            "to_k",
            "to_v",
            "to_out.0",
            "proj_in",
            "proj_out",
            "ff.net.0.proj",
            "ff.net.2",
        ];
        let tensors = crate::io::tensor_io::read_tensors(file)?;
        let mut targets: Vec<String> = Vec::new();
        let mut rank = None;
        for (key, data) in &tensors {
            let module = key
                .split(".lora_A.")
                .next()
                .filter(|_| key.contains(".lora_A."));
            let module = module.or_else(|| {
                key.split(".lora.down.")
                    .next()
                    .filter(|_| key.contains(".lora.down."))
            });
            let Some(module) = module else { continue };
            rank = rank.or(data.shape.first().copied());
            if let Some(name) = KNOWN
                .iter()
                .find(|name| module.ends_with(&format!(".{name}")))
            {
                if !targets.iter().any(|t| t == name) {
                    targets.push(name.to_string());
                }
            }
        }
        let bad = |message: &str| crate::io::load::LoadError::Config {
            path: file.to_path_buf(),
            message: message.into(),
        };
        let rank = rank
            .ok_or_else(|| bad("no `lora_A` / `lora.down` tensors: not a diffusers LoRA file"))?;
        if targets.is_empty() {
            return Err(bad(
                "its LoRA layers target no module this U-Net implementation knows",
            ));
        }
        Ok(Self {
            rank,
            alpha: rank as f64,
            targets,
        })
    }

    pub fn targets(&self, name: &str) -> bool {
        self.targets.iter().any(|t| t == name)
    }
}

#[derive(Module, Debug)]
#[allow(non_snake_case)]
pub struct Linear<B: Backend> {
    /// `[in, out]` (burn's layout; the checkpoint's `[out, in]` is transposed on load).
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub lora_A: Option<burn::nn::Linear<B>>,
    pub lora_B: Option<burn::nn::Linear<B>>,
    /// α / r.
    pub lora_scale: f64,
}

impl<B: Backend> Linear<B> {
    /// A plain linear layer; `lora` adds an adapter when its target list names `name`.
    pub fn new(
        d_in: usize,
        d_out: usize,
        bias: bool,
        name: &str,
        lora: Option<&LoraConfig>,
        device: &B::Device,
    ) -> Self {
        let base = LinearConfig::new(d_in, d_out)
            .with_bias(bias)
            .init::<B>(device);
        let mut layer = Self {
            weight: base.weight,
            bias: base.bias,
            lora_A: None,
            lora_B: None,
            lora_scale: 0.0,
        };
        if let Some(config) = lora.filter(|c| c.targets(name)) {
            let r = config.rank;
            layer.lora_A = Some(
                LinearConfig::new(d_in, r)
                    .with_bias(false)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: 1.0 / r as f64,
                    })
                    .init(device),
            );
            layer.lora_B = Some(
                LinearConfig::new(r, d_out)
                    .with_bias(false)
                    .with_initializer(Initializer::Zeros)
                    .init(device),
            );
            layer.lora_scale = config.alpha / r as f64;
        }
        layer
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let base = linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match (&self.lora_A, &self.lora_B) {
            (Some(a), Some(b)) => {
                let down = linear(x, a.weight.val(), None);
                base + linear(down, b.weight.val(), None) * self.lora_scale
            }
            _ => base,
        }
    }
}

/// Replaces every `lora_B` by zeros: the module then computes its base model (peft's `disable_adapters`).
/// Used on a no-grad copy for the reference pass; the base weights are shared, not copied.
pub struct DisableLora {
    path: Vec<String>,
}

impl DisableLora {
    pub fn apply<B: Backend, M: Module<B>>(module: M) -> M {
        module.map(&mut Self { path: Vec::new() })
    }
}

impl<B: Backend> ModuleMapper<B> for DisableLora {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.path.iter().any(|p| p == "lora_B") {
            param.map(|t| t.zeros_like())
        } else {
            param
        }
    }
}

/// Marks only LoRA parameters as trainable (the base model is frozen), or with `lora_only = false`
/// every parameter (full fine-tuning). Apply it last: re-wrapping parameters (e.g. new ids) drops the flag.
pub struct TrainOnlyLora {
    path: Vec<String>,
    lora_only: bool,
}

impl TrainOnlyLora {
    pub fn apply<B: Backend, M: Module<B>>(module: M) -> M {
        module.map(&mut Self {
            path: Vec::new(),
            lora_only: true,
        })
    }

    pub fn all_trainable<B: Backend, M: Module<B>>(module: M) -> M {
        module.map(&mut Self {
            path: Vec::new(),
            lora_only: false,
        })
    }
}

impl<B: Backend> ModuleMapper<B> for TrainOnlyLora {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let trainable = !self.lora_only || self.path.iter().any(|p| p.starts_with("lora_"));
        param.set_require_grad(trainable)
    }
}
