//! Objectives: identities that must hold, and (with the fixture) agreement with a PyTorch transcription
//! of the official code on the same per-sample errors.

mod common;

use burn::backend::Autodiff;
use burn::prelude::*;
use common::*;
use popalign_core::objectives::PairErrors;
use popalign_core::objectives::dpo::dpo_loss;
use popalign_core::objectives::popalign::{PopAlignConfig, SingleWorker, popalign_loss};

type AD = Autodiff<B>;

fn errors(e_theta: &[f32], e_ref: &[f32]) -> (Tensor<AD, 1>, PairErrors<AD>) {
    let theta = Tensor::<AD, 1>::from_floats(e_theta, &device()).require_grad();
    let reference = Tensor::<AD, 1>::from_floats(e_ref, &device());
    (theta.clone(), PairErrors { e_theta: theta, e_ref: reference })
}

fn scalar(t: Tensor<AD, 1>) -> f64 {
    t.into_scalar() as f64
}

#[test]
fn popalign_with_one_worker_and_one_pair_equals_dpo() {
    let (theta_a, pa) = errors(&[0.1210, 0.1187], &[0.1213, 0.1185]);
    let (theta_b, pb) = errors(&[0.1210, 0.1187], &[0.1213, 0.1185]);
    let pop = popalign_loss(&pa, &PopAlignConfig::default(), &SingleWorker);
    let dpo = dpo_loss(&pb, 5000.0);
    let (lp, ld) = (scalar(pop.loss.clone()), scalar(dpo.loss.clone()));
    println!("popalign {lp:.8} dpo {ld:.8}");
    // (n + 1e-6) in the official reference point shifts z by ~1e-6 relative.
    assert!((lp - ld).abs() <= 1e-5 * ld.abs(), "{lp} vs {ld}");
    let ga = theta_a.grad(&pop.loss.backward()).unwrap().to_data().to_vec::<f32>().unwrap();
    let gb = theta_b.grad(&dpo.loss.backward()).unwrap().to_data().to_vec::<f32>().unwrap();
    for (a, b) in ga.iter().zip(&gb) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "{ga:?} vs {gb:?}");
    }
}
