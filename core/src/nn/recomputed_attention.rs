//! Attention for training whose memory does not grow with L² (memory-efficient attention, Rabe & Staats 2021;
//! the same backward as FlashAttention's, written with burn ops).
//!
//! burn 0.21's autodiff computes `attention` with `attention_fallback`: the L×L scores and their softmax stay on
//! the tape until the backward pass. At 1024 px, SDXL's 4096-token self-attention keeps about 1.3 GB per call in
//! f32, tens of GB per sample. This op keeps only Q, K, V and the output O, and works one block of queries at
//! a time, recomputing the block's scores in the backward pass:
//!
//! ```text
//! forward,  per query block c:  P_c = softmax(s·Q_c Kᵀ),   O_c = P_c V                 (s = 1/√d)
//! backward, per query block c:  P_c recomputed,   dV += P_cᵀ dO_c,   dP_c = dO_c Vᵀ,
//!                               dA_c = P_c ⊙ (dP_c − rowsum(dO_c ⊙ O_c)),
//!                               dQ_c = s·dA_c K,   dK += s·dA_cᵀ Q_c
//! ```
//!
//! One block's scores (at most [`SCORES_PER_BLOCK`] elements) is the whole extra memory, whatever L is.
//!
//! Models call [`attention`]. It runs this op on the autodiff backends a trainer registered with [`enable`]
//! (with the `autodiff` feature). Elsewhere on ndarray it runs the same blocked forward pass (the formula of
//! burn's attention, bit for bit, with products that read the heads through their strides and scores that
//! never exceed one block), and burn's own attention on every other backend, whose kernels are fast there.
//! The registry exists because the op must be written for the concrete `Autodiff<B, C>` type, while the models
//! are generic over any `B: Backend`.

use std::any::{Any, TypeId};
use std::sync::RwLock;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module;
use burn::tensor::ops::AttentionModuleOptions;

use super::matmul::apply as matmul;

/// Score elements (batch × heads × queries × keys) computed at once: 64 MiB in f32.
pub const SCORES_PER_BLOCK: usize = 1 << 24;

type Erased = fn(Box<dyn Any>) -> Box<dyn Any>;

/// Backends (by `TypeId`) whose attention is the recomputing op.
static REGISTERED: RwLock<Vec<(TypeId, Erased)>> = RwLock::new(Vec::new());

/// `softmax(Q Kᵀ/√d) V` over `[B, H, L, D]` heads: the recomputing op where [`enable`]d, burn's otherwise.
pub fn attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let registered = REGISTERED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .find(|(id, _)| *id == TypeId::of::<B>())
        .map(|(_, op)| *op);
    match registered {
        Some(op) => *op(Box::new((q, k, v)))
            .downcast()
            .expect("registered under this backend's TypeId"),
        None if strided_products_run::<B>() => {
            let rows = block_rows(&q, &k, SCORES_PER_BLOCK);
            forward_blocked(q, k, v, rows)
        }
        None => module::attention(q, k, v, None, None, AttentionModuleOptions::default()),
    }
}

/// Plain ndarray: under autodiff, attention that no trainer [`enable`]d stays burn's.
#[cfg(feature = "cpu-kernels")]
fn strided_products_run<B: Backend>() -> bool {
    super::cpu_matmul::runs_plain_on::<B>()
}

#[cfg(not(feature = "cpu-kernels"))]
fn strided_products_run<B: Backend>() -> bool {
    false
}

/// Query rows per block, so that one block's scores hold at most `scores_per_block` elements.
fn block_rows(
    q: &Tensor<impl Backend, 4>,
    k: &Tensor<impl Backend, 4>,
    scores_per_block: usize,
) -> usize {
    let [b, h, l_q, _] = q.dims();
    let l_k = k.dims()[2];
    (scores_per_block / (b * h * l_k).max(1)).clamp(1, l_q.max(1))
}

/// Whether [`attention`] runs the recomputing op on backend `B`.
pub fn is_enabled<B: Backend>() -> bool {
    REGISTERED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .any(|(id, _)| *id == TypeId::of::<B>())
}

/// `(start, length)` of each query block.
fn blocks(l_q: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..l_q)
        .step_by(rows)
        .map(move |start| (start, rows.min(l_q - start)))
}

fn probabilities<B: Backend>(q_block: Tensor<B, 4>, k: Tensor<B, 4>, scale: f64) -> Tensor<B, 4> {
    #[cfg(feature = "cpu-kernels")]
    let (q_block, k_t) = match super::cpu_matmul::softmax_of_product(q_block, k.transpose(), scale)
    {
        Ok(p) => return p,
        Err(operands) => operands,
    };
    #[cfg(not(feature = "cpu-kernels"))]
    let k_t = k.transpose();
    softmax(matmul(q_block, k_t).mul_scalar(scale), 3)
}

fn scale_of<B: Backend>(q: &Tensor<B, 4>) -> f64 {
    1.0 / (q.dims()[3] as f64).sqrt()
}

/// The forward pass, one block of `rows` queries at a time (no autodiff needed).
pub fn forward_blocked<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    rows: usize,
) -> Tensor<B, 4> {
    let scale = scale_of(&q);
    let l_q = q.dims()[2];
    let outputs = blocks(l_q, rows)
        .map(|(start, len)| {
            matmul(
                probabilities(q.clone().narrow(2, start, len), k.clone(), scale),
                v.clone(),
            )
        })
        .collect();
    Tensor::cat(outputs, 2)
}

/// Gradients `(dQ, dK, dV)` of the module formula, recomputing each block's probabilities.
pub fn backward_blocked<B: Backend>(
    [q, k, v, out, grad_out]: [Tensor<B, 4>; 5],
    rows: usize,
) -> [Tensor<B, 4>; 3] {
    let scale = scale_of(&q);
    let l_q = q.dims()[2];
    let (mut grad_k, mut grad_v) = (k.zeros_like(), v.zeros_like());
    let mut grad_q = Vec::new();
    for (start, len) in blocks(l_q, rows) {
        let q_c = q.clone().narrow(2, start, len);
        let grad_out_c = grad_out.clone().narrow(2, start, len);
        let out_c = out.clone().narrow(2, start, len);
        let p = probabilities(q_c.clone(), k.clone(), scale);
        grad_v = grad_v + matmul(p.clone().transpose(), grad_out_c.clone());
        let grad_p = matmul(grad_out_c.clone(), v.clone().transpose());
        let row_dot = (grad_out_c * out_c).sum_dim(3);
        let grad_scores = p * (grad_p - row_dot);
        grad_q.push(matmul(grad_scores.clone(), k.clone()).mul_scalar(scale));
        grad_k = grad_k + matmul(grad_scores.transpose(), q_c).mul_scalar(scale);
    }
    [Tensor::cat(grad_q, 2), grad_k, grad_v]
}

#[cfg(feature = "autodiff")]
pub use autodiff_op::{enable, recomputed_attention};

#[cfg(feature = "autodiff")]
mod autodiff_op {
    use burn::backend::Autodiff;
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::prelude::*;
    use burn::tensor::TensorPrimitive;
    use burn::tensor::ops::FloatTensor;

    use super::*;

    type Heads<B, C> = Tensor<Autodiff<B, C>, 4>;

    fn register<B: Backend>(op: Erased) {
        let mut registered = REGISTERED
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !registered.iter().any(|(id, _)| *id == TypeId::of::<B>()) {
            registered.push((TypeId::of::<B>(), op));
        }
    }

    /// Makes [`attention`] run [`recomputed_attention`] on `Autodiff<B, C>` from now on, process-wide.
    pub fn enable<B: Backend, C: CheckpointStrategy>() {
        fn op<B: Backend, C: CheckpointStrategy>(args: Box<dyn Any>) -> Box<dyn Any> {
            let (q, k, v) = *args
                .downcast::<(Heads<B, C>, Heads<B, C>, Heads<B, C>)>()
                .expect("registered for Autodiff<B, C>");
            Box::new(recomputed_attention(q, k, v, SCORES_PER_BLOCK))
        }
        register::<Autodiff<B, C>>(op::<B, C>);
    }

    /// The module formula as one autodiff operation, blocks of at most `scores_per_block` score elements.
    pub fn recomputed_attention<B: Backend, C: CheckpointStrategy>(
        q: Heads<B, C>,
        k: Heads<B, C>,
        v: Heads<B, C>,
        scores_per_block: usize,
    ) -> Heads<B, C> {
        let rows = block_rows(&q, &k, scores_per_block);
        let [q, k, v] = [q, k, v].map(|t| t.into_primitive().tensor());
        let [q_in, k_in, v_in] = [&q, &k, &v].map(|t| inner::<B>(t.primitive.clone()));
        let out = forward_blocked(q_in, k_in, v_in, rows)
            .into_primitive()
            .tensor();
        let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
        let output = match RecomputedAttention
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = ([q.primitive, k.primitive, v.primitive, out.clone()], rows);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(output))
    }

    fn inner<B: Backend>(primitive: FloatTensor<B>) -> Tensor<B, 4> {
        Tensor::from_primitive(TensorPrimitive::Float(primitive))
    }

    #[derive(Debug)]
    struct RecomputedAttention;

    impl<B: Backend> Backward<B, 3> for RecomputedAttention {
        /// Q, K, V, O and the query rows per block.
        type State = ([FloatTensor<B>; 4], usize);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad_out = grads.consume::<B>(&ops.node);
            let ([q, k, v, out], rows) = ops.state;
            let saved = [q, k, v, out, grad_out].map(inner::<B>);
            let gradients = backward_blocked(saved, rows);
            for (parent, grad) in ops.parents.into_iter().zip(gradients) {
                if let Some(node) = parent {
                    let id: NodeId = node.id;
                    grads.register::<B>(id, grad.into_primitive().tensor());
                }
            }
        }
    }
}
