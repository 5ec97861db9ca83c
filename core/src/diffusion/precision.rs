//! Mixed precision as diffusers trains with `--mixed_precision bf16`: the weights the optimizer updates stay in
//! f32 (the master copy) and a bf16 copy of the module runs the forward pass; frozen weights can be stored in
//! bf16 outright. The cast is an autodiff op, so the loss's gradient reaches the f32 masters in f32.
//!
//! The U-Net keeps timesteps in f32 and casts their sinusoidal features to the sample's dtype, as diffusers
//! does. Only backends with bf16 tensors run it (CUDA, and burn-flex on the CPU); ndarray has none.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::models::unet::UNetConditioning;
use crate::nn::params::{cast_frozen_params, cast_params};

/// The compute precision of a training run (`precision` in `train.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in the backend's float type.
    #[default]
    F32,
    /// Forward and backward in bf16, f32 master weights and optimizer state.
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// The module as the forward pass sees it: itself in f32, a bf16 copy (of the same parameter ids)
    /// in bf16.
    pub fn module<B: Backend, M: Module<B>>(self, module: M) -> M {
        match self {
            Precision::F32 => module,
            Precision::Bf16 => cast_params(module, FloatDType::BF16),
        }
    }

    /// The module with its frozen parameters (those that take no gradient) stored in this precision, as
    /// diffusers stores a LoRA run's base U-Net in bf16: half the memory, and the per-step cast of
    /// [`Precision::module`] leaves them as they are. Trained parameters stay in f32.
    pub fn store_frozen<B: Backend, M: Module<B>>(self, module: M) -> M {
        match self {
            Precision::F32 => module,
            Precision::Bf16 => cast_frozen_params(module, FloatDType::BF16),
        }
    }

    /// A forward input in this precision.
    pub fn input<B: Backend, const D: usize>(self, tensor: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => tensor,
            Precision::Bf16 => tensor.cast(FloatDType::BF16),
        }
    }

    /// The U-Net's text conditioning in this precision (`time_ids` stay f32, like timesteps).
    pub fn conditioning<B: Backend>(self, cond: UNetConditioning<B>) -> UNetConditioning<B> {
        UNetConditioning {
            encoder_hidden_states: self.input(cond.encoder_hidden_states),
            text_embeds: cond.text_embeds.map(|t| self.input(t)),
            time_ids: cond.time_ids,
        }
    }

    /// A forward output back in f32, where losses are taken.
    pub fn output<B: Backend, const D: usize>(self, tensor: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => tensor,
            Precision::Bf16 => tensor.cast(FloatDType::F32),
        }
    }
}
