//! Objectives: identities that must hold, and (with the fixture) agreement with a PyTorch transcription
//! of the official code on the same per-sample errors.

use crate::common;

use burn::backend::Autodiff;
use burn::prelude::*;
use common::*;
use popalign_core::align::objectives::PairErrors;
use popalign_core::align::objectives::dpo::dpo_loss;
use popalign_core::align::objectives::popalign::{PopAlignConfig, SingleWorker, popalign_loss};

type AD = Autodiff<B>;

fn errors(e_theta: &[f32], e_ref: &[f32]) -> (Tensor<AD, 1>, PairErrors<AD>) {
    let theta = Tensor::<AD, 1>::from_floats(e_theta, &device()).require_grad();
    let reference = Tensor::<AD, 1>::from_floats(e_ref, &device());
    (
        theta.clone(),
        PairErrors {
            e_theta: theta,
            e_ref: reference,
        },
    )
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
    let ga = theta_a
        .grad(&pop.loss.backward())
        .unwrap()
        .to_data()
        .to_vec::<f32>()
        .unwrap();
    let gb = theta_b
        .grad(&dpo.loss.backward())
        .unwrap()
        .to_data()
        .to_vec::<f32>()
        .unwrap();
    for (a, b) in ga.iter().zip(&gb) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1e-3),
            "{ga:?} vs {gb:?}"
        );
    }
}

/// Loss and d loss / d e_θ on the fixture's per-sample errors (PyTorch transcription of the official code).
fn check_per_sample(
    label: &str,
    loss_of: impl Fn(&PairErrors<AD>) -> Tensor<AD, 1>,
    loss_key: &str,
    grad_key: &str,
) {
    let golden = io("objectives");
    let theta = float::<1>(&golden["e_theta"]);
    let (theta, errors) = errors(
        &theta.to_data().to_vec::<f32>().unwrap(),
        &golden["e_ref"].to_vec::<f32>().unwrap(),
    );
    let loss = loss_of(&errors);
    let grad = theta.grad(&loss.backward()).unwrap();
    let want_loss = golden[loss_key].to_vec::<f32>().unwrap()[0];
    let got_loss = scalar(loss) as f32;
    let loss_rel = (got_loss - want_loss).abs() / want_loss.abs();
    let want_grad = golden[grad_key].to_vec::<f32>().unwrap();
    let got_grad = grad.to_data().to_vec::<f32>().unwrap();
    let scale = want_grad.iter().fold(0f32, |m, g| m.max(g.abs()));
    let grad_rel = got_grad
        .iter()
        .zip(&want_grad)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
        / scale;
    println!("{label}: loss rel error {loss_rel:.2e}, grad max error / max |grad| {grad_rel:.2e}");
    assert!(
        loss_rel <= 1e-5 && grad_rel <= 1e-5,
        "{label}: loss {got_loss} vs {want_loss}, grad {got_grad:?} vs {want_grad:?}"
    );
}

#[test]
fn objectives_match_the_official_formulas() {
    use popalign_core::align::objectives::{pairwise::pairwise_loss, sft::sft_loss};
    let groups: Vec<usize> = io("objectives")["group"]
        .to_vec::<i64>()
        .unwrap()
        .iter()
        .map(|&g| g as usize)
        .collect();
    check_per_sample(
        "popalign",
        |e| popalign_loss(e, &PopAlignConfig::default(), &SingleWorker).loss,
        "popalign_loss",
        "popalign_grad",
    );
    let weighted = PopAlignConfig {
        lambda_preferred: 2.0,
        lambda_dispreferred: 0.5,
        ..Default::default()
    };
    check_per_sample(
        "popalign λ",
        |e| popalign_loss(e, &weighted, &SingleWorker).loss,
        "popalign_lambda_loss",
        "popalign_lambda_grad",
    );
    check_per_sample("dpo", |e| dpo_loss(e, 5000.0).loss, "dpo_loss", "dpo_grad");
    check_per_sample(
        "pairwise",
        |e| pairwise_loss(e, &groups, 5000.0).loss,
        "pairwise_loss",
        "pairwise_grad",
    );
    check_per_sample("sft", |e| sft_loss(e).loss, "sft_loss", "sft_grad");
}

#[test]
fn popalign_reference_point_matches_official() {
    let golden = io("objectives");
    let (_, e) = errors(
        &golden["e_theta"].to_vec::<f32>().unwrap(),
        &golden["e_ref"].to_vec::<f32>().unwrap(),
    );
    let z = popalign_loss(&e, &PopAlignConfig::default(), &SingleWorker)
        .diagnostics
        .z
        .unwrap();
    let want = golden["popalign_z"].to_vec::<f32>().unwrap()[0] as f64;
    println!("z {z:.6e} vs {want:.6e}");
    assert!((z - want).abs() <= 1e-6 * want.abs().max(1e-6));
}

#[test]
fn dense_loss_step_weights_and_log_density_match() {
    use popalign_core::align::objectives::dense::{DenseConfig, dense_loss, step_weights};
    use popalign_core::diffusion::schedulers::ddim::gaussian_log_density;
    let golden = io("objectives");
    let theta = float::<2>(&golden["dense_logp_theta"]);
    let theta = Tensor::<AD, 2>::from_data(theta.into_data(), &device()).require_grad();
    let reference = Tensor::<AD, 2>::from_data(golden["dense_logp_ref"].clone(), &device());
    let loss = dense_loss(theta.clone(), reference, &DenseConfig::default());
    let want = golden["dense_loss"].to_vec::<f32>().unwrap()[0];
    let grad = theta
        .grad(&loss.clone().backward())
        .unwrap()
        .to_data()
        .to_vec::<f32>()
        .unwrap();
    let got = scalar(loss) as f32;
    println!("dense loss {got} vs {want}");
    assert!((got - want).abs() <= 1e-5 * want.abs());
    for (a, b) in grad
        .iter()
        .zip(golden["dense_grad"].to_vec::<f32>().unwrap())
    {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    let weights = step_weights(0.9, 50);
    for (a, b) in weights
        .iter()
        .zip(golden["dense_step_weights"].to_vec::<f32>().unwrap())
    {
        assert!((*a as f32 - b).abs() <= 1e-6 * b.abs(), "{a} vs {b}");
    }
    let std = golden["lp_std"].to_vec::<f32>().unwrap()[0] as f64;
    let lp = gaussian_log_density(
        float::<4>(&golden["lp_prev"]),
        float::<4>(&golden["lp_mean"]),
        &[std],
    );
    assert_close("ddim log density", lp, &golden["lp_value"], 1e-5);
}

#[test]
fn softplus_has_gradient_one_half_at_zero() {
    // Training starts with policy = reference (fresh LoRA), so u = 0 exactly: the gradient must not vanish there.
    let v = Tensor::<AD, 1>::from_floats([0.0, 3.0, -3.0], &device()).require_grad();
    let grad = v
        .grad(
            &popalign_core::align::objectives::softplus(v.clone())
                .sum()
                .backward(),
        )
        .unwrap()
        .to_data()
        .to_vec::<f32>()
        .unwrap();
    let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
    for (g, x) in grad.iter().zip([0.0f32, 3.0, -3.0]) {
        assert!((g - sigmoid(x)).abs() < 1e-6, "softplus'({x}) = {g}");
    }
}

/// The anchor adds `w · β · mean(e_θ of the preferred)`; with a hand-computed gradient on two pairs.
#[test]
fn popalign_sft_anchor_adds_a_scaled_sft_term() {
    let e_theta = [0.30, 0.20, 0.50, 0.40];
    let e_ref = [0.31, 0.22, 0.49, 0.41];
    let beta = 10.0;
    let plain = PopAlignConfig {
        beta,
        ..Default::default()
    };
    let anchored = PopAlignConfig {
        sft_weight: 0.5,
        ..plain.clone()
    };
    let (theta_p, p) = errors(&e_theta, &e_ref);
    let (theta_a, a) = errors(&e_theta, &e_ref);
    let lp = popalign_loss(&p, &plain, &SingleWorker).loss;
    let la = popalign_loss(&a, &anchored, &SingleWorker).loss;
    let sft = (0.30 + 0.20) / 2.0 * 0.5 * beta;
    let (vp, va) = (scalar(lp.clone()), scalar(la.clone()));
    assert!((va - vp - sft).abs() < 1e-5, "{va} − {vp} ≠ {sft}");
    let grad = |t: Tensor<AD, 1>, l: Tensor<AD, 1>| {
        t.grad(&l.backward())
            .unwrap()
            .to_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let (gp, ga) = (grad(theta_p, lp), grad(theta_a, la));
    // d/de_θ of 0.5·β·mean over 2 preferred = 0.5·10/2 = 2.5 on the preferred, 0 on the dispreferred.
    for (i, (p, a)) in gp.iter().zip(&ga).enumerate() {
        let extra = if i < 2 { 2.5 } else { 0.0 };
        assert!(
            (a - p - extra).abs() < 1e-5,
            "sample {i}: {a} vs {p} + {extra}"
        );
    }
}
