//! Preference objectives over per-sample denoising errors, one file each with its formula.
//!
//! Notation (docs/design.md §5): a batch of B pairs is laid out `[preferred_1..B, dispreferred_1..B]`;
//! `e_θ(x) = mean_{c,h,w}(ε_θ(x_t, t, c) − ε)²`, `e_ref` the same for the frozen reference, and the implicit
//! reward `g = e_ref − e_θ`. Both members of a pair share `t` and `ε`.

pub mod alignprop;
pub mod dense;
pub mod dpo;
pub mod pairwise;
pub mod popalign;
pub mod sft;

use burn::prelude::*;
use burn::tensor::activation::relu;

/// Which objective `popalign train` optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectiveKind {
    /// PopAlign as the official code trains it (population reference point).
    Popalign,
    /// PopAlign's Jensen lower bound over member pairs of the same caption (the paper's derivation).
    PopalignPairwise,
    /// Diffusion-DPO.
    Dpo,
    /// Supervised fine-tuning on the preferred images.
    Sft,
    /// Temporally discounted (dense-reward) DPO on the recorded sampling chains of the pair's images.
    Dense,
    /// AlignProp: a differentiable reward backpropagated through the sampler (no preference data).
    Alignprop,
}

/// Per-sample errors of one batch of pairs.
#[derive(Debug, Clone)]
pub struct PairErrors<B: Backend> {
    /// `[2B]`, with gradient.
    pub e_theta: Tensor<B, 1>,
    /// `[2B]`, the reference's errors (no gradient needed).
    pub e_ref: Tensor<B, 1>,
}

/// What every objective reports besides its loss.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Diagnostics {
    /// Share of pairs whose preferred member has the larger implicit reward (`g_w > g_l`).
    pub implicit_accuracy: f64,
    /// Mean `g` over the preferred / dispreferred samples of this worker.
    pub g_preferred: f64,
    pub g_dispreferred: f64,
    /// PopAlign's reference point, where the objective has one.
    pub z: Option<f64>,
}

pub struct ObjectiveOutput<B: Backend> {
    /// Scalar loss `[1]`.
    pub loss: Tensor<B, 1>,
    pub diagnostics: Diagnostics,
}

impl<B: Backend> PairErrors<B> {
    pub fn pairs(&self) -> usize {
        self.e_theta.dims()[0] / 2
    }

    /// `g = e_ref − e_θ` split into (preferred, dispreferred), each `[B]`.
    pub fn implicit_rewards(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let g = self.e_ref.clone().detach() - self.e_theta.clone();
        let b = self.pairs();
        (g.clone().narrow(0, 0, b), g.narrow(0, b, b))
    }

    /// Accuracy and mean rewards, read back from the device.
    pub fn diagnostics(&self) -> Diagnostics {
        let (g_w, g_l) = self.implicit_rewards();
        let (w, l) = (to_vec(g_w), to_vec(g_l));
        let wins = w.iter().zip(&l).filter(|(a, b)| a > b).count();
        Diagnostics {
            implicit_accuracy: wins as f64 / w.len() as f64,
            g_preferred: w.iter().sum::<f64>() / w.len() as f64,
            g_dispreferred: l.iter().sum::<f64>() / l.len() as f64,
            z: None,
        }
    }
}

/// Numerically stable `softplus(v) = ln(1 + eᵛ) = max(v, 0) + ln(1 + e^{−|v|})`, with `−|v|` written as
/// `v − 2·max(v, 0)` so the gradient at `v = 0` is σ(0) = ½. (With `abs`, whose derivative at 0 is 0, the
/// gradient vanishes exactly where training starts: a fresh LoRA makes policy = reference, so `u = 0`.)
pub fn softplus<B: Backend, const D: usize>(v: Tensor<B, D>) -> Tensor<B, D> {
    let positive = relu(v.clone());
    positive.clone() + (v - positive * 2.0).exp().log1p()
}

pub(crate) fn to_vec<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("f64 data")
}

/// `e = mean_{c,h,w}(prediction − target)²` per sample: `[N, C, H, W]` → `[N]`.
pub fn per_sample_mse<B: Backend>(prediction: Tensor<B, 4>, target: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = prediction.dims();
    (prediction - target)
        .powf_scalar(2.0)
        .reshape([n, c * h * w])
        .mean_dim(1)
        .reshape([n])
}
