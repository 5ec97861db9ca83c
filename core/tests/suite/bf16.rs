//! bf16 mixed precision (`popalign_core::diffusion::precision`) on burn-flex, the CPU backend with bf16 tensors. bf16
//! keeps 8 bits of mantissa, so a bf16 run cannot match f32 to 1e-4; the bar is PyTorch's own bf16 run of
//! the same tiny SDXL U-Net (tools/fixtures/make_bf16.py): our forward output and our gradients (reaching
//! the f32 master weights through a bf16 copy), the dense objective's log-densities and AlignProp's run may
//! lie at most 1.5 times as far from the exact values as PyTorch's do.

use crate::common;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType, TensorData};
use common::{fixtures, io};
use popalign_core::diffusion::precision::Precision;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};
use popalign_core::nn::params::cast_params;

type F = Flex;
type A = Autodiff<Flex>;

fn tensor<Be: Backend, const D: usize>(data: &TensorData, dtype: FloatDType) -> Tensor<Be, D> {
    Tensor::<Be, D>::from_data(data.clone(), &Default::default()).cast(dtype)
}

/// The fixture's U-Net output with the model and the sample, context and text embeddings in `precision`
/// (timesteps and time_ids stay f32, as a bf16 pipeline passes them), cast back to f32.
fn forward<Be: Backend>(unet: &UNet2DConditionModel<Be>, precision: Precision) -> Tensor<Be, 4> {
    let inputs = io("unet_sdxl_inputs");
    let dtype = precision.dtype();
    let model = cast_params(unet.clone(), dtype);
    let cond = UNetConditioning {
        encoder_hidden_states: tensor(&inputs["encoder_hidden_states"], dtype),
        text_embeds: Some(tensor(&inputs["text_embeds"], dtype)),
        time_ids: Some(tensor(&inputs["time_ids"], FloatDType::F32)),
    };
    let out = model.forward(
        tensor(&inputs["sample"], dtype),
        tensor(&inputs["timestep"], FloatDType::F32),
        &cond,
    );
    assert_eq!(
        out.dtype(),
        DType::from(dtype),
        "the forward runs in {precision:?}"
    );
    out.cast(FloatDType::F32)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn values<Be: Backend, const D: usize>(t: Tensor<Be, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// The parameters whose gradients tools/fixtures/make_bf16.py recorded, in the order `grads` returns them.
const PARAMS: [&str; 4] = [
    "conv_in.weight",
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    "up_blocks.0.resnets.0.conv1.weight",
    "conv_out.weight",
];

fn unet<Be: Backend>() -> UNet2DConditionModel<Be> {
    UNet2DConditionModel::from_dir(
        &fixtures().join("tiny-sdxl/unet"),
        None,
        &Default::default(),
    )
    .unwrap()
}

#[test]
fn bf16_forward_is_as_close_to_f32_as_pytorchs_bf16() {
    let golden = io("unet_sdxl_outputs")["out"].to_vec::<f32>().unwrap();
    let torch_bf16 = io("unet_sdxl_bf16_outputs")["out"].to_vec::<f32>().unwrap();
    let unet = unet::<F>();
    let f32_error = max_abs(&values(forward(&unet, Precision::F32)), &golden);
    let ours = values(forward(&unet, Precision::Bf16));
    let ours_error = max_abs(&ours, &golden);
    let torch_error = max_abs(&torch_bf16, &golden);
    println!(
        "f32 on flex vs diffusers f32: {f32_error:.2e}; bf16 vs diffusers f32: ours {ours_error:.2e}, \
         PyTorch's {torch_error:.2e}; ours vs PyTorch's bf16 {:.2e}",
        max_abs(&ours, &torch_bf16)
    );
    assert!(f32_error <= 1e-4, "f32 forward off by {f32_error}");
    assert!(
        ours_error <= 1.5 * torch_error,
        "bf16 error {ours_error} against PyTorch's {torch_error}"
    );
}

#[test]
fn bf16_gradients_reach_the_f32_masters() {
    let master = unet::<A>();
    let target = io("unet_sdxl_outputs")["out"].clone();
    let grads = |precision: Precision| {
        let out = forward(&master, precision);
        let target = tensor::<A, 4>(&target, FloatDType::F32) * 0.5;
        let loss = (out - target).powf_scalar(2.0).mean();
        let mut grads = loss.backward();
        let unet = &master;
        let to_q = &unet.down_blocks[1].attentions[0].transformer_blocks[0]
            .attn1
            .to_q;
        vec![
            master_gradient(&unet.conv_in.weight, &mut grads, precision, false),
            // burn keeps a Linear's weight as [in, out], torch as [out, in].
            master_gradient(&to_q.weight, &mut grads, precision, true),
            master_gradient(
                &unet.up_blocks[0].resnets[0].conv1.weight,
                &mut grads,
                precision,
                false,
            ),
            master_gradient(&unet.conv_out.weight, &mut grads, precision, false),
        ]
    };
    let ours_f32 = grads(Precision::F32);
    let ours_bf16 = grads(Precision::Bf16);
    let reference = io("unet_sdxl_bf16_outputs");
    for (i, name) in PARAMS.iter().enumerate() {
        let torch_f32 = reference[&format!("grad.{name}.f32")]
            .to_vec::<f32>()
            .unwrap();
        let torch_bf16 = reference[&format!("grad.{name}.bf16")]
            .to_vec::<f32>()
            .unwrap();
        let scale = torch_f32.iter().fold(0f32, |m, x| m.max(x.abs()));
        let f32_error = max_abs(&ours_f32[i], &torch_f32) / scale;
        let ours = max_abs(&ours_bf16[i], &torch_f32) / scale;
        let torch = max_abs(&torch_bf16, &torch_f32) / scale;
        println!(
            "{name}: f32 gradient off PyTorch's by {f32_error:.1e} of its largest entry; \
             bf16 gradients off the f32 one by {ours:.2e} (ours) and {torch:.2e} (PyTorch's)"
        );
        assert!(f32_error <= 1e-4, "{name}: f32 gradient {f32_error}");
        assert!(
            ours <= 1.5 * torch,
            "{name}: bf16 gradient {ours} against PyTorch's {torch}"
        );
    }
}

fn master_gradient<const D: usize>(
    param: &burn::module::Param<Tensor<A, D>>,
    grads: &mut <A as burn::tensor::backend::AutodiffBackend>::Gradients,
    precision: Precision,
    transpose: bool,
) -> Vec<f32> {
    let g = param
        .val()
        .grad_remove(grads)
        .expect("a gradient on the f32 master");
    assert_eq!(
        g.dtype(),
        DType::F32,
        "{precision:?}: master gradients stay f32"
    );
    values(if transpose { g.transpose() } else { g })
}

/// With LoRA, the frozen base is stored in bf16 (half its bytes) while the adapters stay f32 masters; the
/// forward is the one a per-step cast of everything gives, bit for bit, and the adapters' gradients are f32.
#[test]
fn lora_base_is_stored_in_bf16_and_adapters_stay_f32() {
    use burn::module::{ModuleVisitor, Param};
    use popalign_core::nn::lora::{LoraConfig, TrainOnlyLora};

    /// Bytes of the parameters that take a gradient and of those that do not.
    #[derive(Default)]
    struct Bytes {
        trained: usize,
        frozen: usize,
        trained_dtypes: Vec<DType>,
    }
    impl ModuleVisitor<A> for Bytes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            let t = param.val();
            let bytes = t.shape().num_elements() * t.dtype().size();
            if t.is_require_grad() {
                self.trained += bytes;
                self.trained_dtypes.push(t.dtype());
            } else {
                self.frozen += bytes;
            }
        }
    }
    let bytes = |unet: &UNet2DConditionModel<A>| {
        let mut b = Bytes::default();
        unet.visit(&mut b);
        b
    };

    <A as Backend>::seed(&Default::default(), 3);
    let lora = LoraConfig::new(4, 4.0);
    let unet = UNet2DConditionModel::<A>::from_dir_with_lora(
        &fixtures().join("tiny-sdxl/unet"),
        None,
        Some(&lora),
        &Default::default(),
    )
    .unwrap();
    // Non-zero adapters, so the forward depends on them.
    let unet = unet.map(&mut Perturb);
    let unet = TrainOnlyLora::apply(unet);
    let stored = Precision::Bf16.store_frozen(unet.clone());
    let (before, after) = (bytes(&unet), bytes(&stored));
    println!(
        "frozen base: {} bytes in f32, {} in bf16; adapters {} bytes in both",
        before.frozen, after.frozen, after.trained
    );
    assert_eq!(after.frozen * 2, before.frozen, "the base is halved");
    assert_eq!(after.trained, before.trained, "the adapters are untouched");
    assert!(after.trained_dtypes.iter().all(|d| *d == DType::F32));

    let cast_each_step = values(forward(&unet, Precision::Bf16));
    let out = forward(&stored, Precision::Bf16);
    assert_eq!(values(out.clone()), cast_each_step, "same bf16 forward");
    let mut grads = out.powf_scalar(2.0).mean().backward();
    let to_q = &stored.down_blocks[1].attentions[0].transformer_blocks[0]
        .attn1
        .to_q;
    let g = to_q
        .lora_B
        .as_ref()
        .unwrap()
        .weight
        .val()
        .grad_remove(&mut grads);
    assert_eq!(g.expect("a gradient on the adapter").dtype(), DType::F32);
    assert!(
        to_q.weight.val().grad_remove(&mut grads).is_none(),
        "the frozen base takes no gradient"
    );
}

/// Shifts every float parameter a little (LoRA's B starts at zero).
struct Perturb;

impl burn::module::ModuleMapper<A> for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<A, D>>,
    ) -> burn::module::Param<Tensor<A, D>> {
        param.map(|t| (t.clone() + t.ones_like() * 0.01).detach())
    }
}

/// Dense-reward DPO's log-densities `log π(x_next | x, c)` of the tiny SDXL U-Net + LoRA (policy) and of the
/// same U-Net with adapters off (reference), with the U-Net in bf16, on the recorded transitions of
/// `dense_unet_f64` (CFG 5): how far they and their log-ratio lie from the float64 goldens, ours against
/// PyTorch's bf16 run (tools/fixtures/make_bf16.py), with the same 1.5× bar. The density's 1/(2σ²) magnifies
/// the U-Net's bf16 error, most at the last step (σ smallest).
#[test]
fn bf16_dense_log_densities_are_as_close_as_pytorchs() {
    use common::dense_transitions::{Transitions, transitions};
    use common::lora_unet::lora_unet;
    use popalign_core::align::objectives::dense::transition_log_density;
    use popalign_core::diffusion::schedulers::{DdimScheduler, SchedulerConfig};
    use popalign_core::nn::lora::DisableLora;

    let golden = io("dense_unet_f64");
    let torch_bf16 = io("dense_unet_bf16");
    let device = Default::default();
    let Transitions {
        steps,
        cond,
        x,
        x_next,
        ..
    } = transitions::<F>(&golden);
    let config: SchedulerConfig = popalign_core::io::load::read_config(
        &fixtures().join("tiny-sdxl/scheduler/scheduler_config.json"),
    )
    .unwrap();
    let scheduler = DdimScheduler::new(&config, 4, 1.0);

    let policy = lora_unet::<A>(&device).valid();
    let reference = DisableLora::apply(policy.clone());
    let log_densities = |precision: Precision| {
        [&policy, &reference].map(|unet| {
            values(transition_log_density(
                unet,
                precision,
                &scheduler,
                &cond,
                x.clone(),
                x_next.clone(),
                &steps,
                5.0,
            ))
        })
    };
    let exact = ["log_p_theta", "log_p_ref"]
        .map(|k| golden[k].clone().convert::<f32>().to_vec::<f32>().unwrap());
    let torch = ["log_p_theta", "log_p_ref"].map(|k| torch_bf16[k].to_vec::<f32>().unwrap());
    let ratio = |[theta, reference]: &[Vec<f32>; 2]| -> Vec<f32> {
        theta.iter().zip(reference).map(|(a, b)| a - b).collect()
    };
    let f32_run = log_densities(Precision::F32);
    let ours = log_densities(Precision::Bf16);
    let f32_error = max_abs(&f32_run[0], &exact[0]).max(max_abs(&f32_run[1], &exact[1]));
    println!("f32 on flex: log-densities off float64 by {f32_error:.2e}");
    assert!(f32_error <= 1e-4, "f32 log-densities {f32_error}");
    let mut checks = vec![];
    for (i, name) in ["policy", "reference"].iter().enumerate() {
        checks.push((
            *name,
            max_abs(&ours[i], &exact[i]),
            max_abs(&torch[i], &exact[i]),
        ));
    }
    checks.push((
        "log-ratio",
        max_abs(&ratio(&ours), &ratio(&exact)),
        max_abs(&ratio(&torch), &ratio(&exact)),
    ));
    for (name, ours, torch) in checks {
        println!("bf16 {name}: off float64 by {ours:.3e} (ours), {torch:.3e} (PyTorch's)");
        assert!(
            ours <= 1.5 * torch,
            "{name}: bf16 error {ours} against PyTorch's {torch}"
        );
    }
}

/// AlignProp (make_alignprop.py's runs, K = 1 and 2 of 3 DDIM steps with CFG 5) with the LoRA U-Net in bf16:
/// the final latents, the loss and the LoRA gradients lie at most 1.5 times as far from the f32 goldens as
/// PyTorch's bf16 run's (tools/fixtures/make_bf16.py). The base is stored in bf16, the adapters in f32.
#[test]
fn bf16_alignprop_is_as_close_to_f32_as_pytorchs() {
    use common::alignprop_run::run_alignprop;
    use common::lora_unet::{max_abs, relative, values};

    let golden = io("alignprop");
    let torch_bf16 = io("alignprop_bf16");
    for k in [1, 2] {
        let exact = |name: &str| values(golden[&format!("k{k}_{name}")].clone());
        let torch = |name: &str| values(torch_bf16[&format!("k{k}_{name}")].clone());
        let f32_run = run_alignprop::<A>(k, Precision::F32);
        let f32_grads = relative(&f32_run.grads, &f32_run.golden_grads("alignprop", k));
        println!("K = {k}, f32 on flex: gradients off PyTorch's by {f32_grads:.1e}");
        assert!(f32_grads <= 1e-4);
        let ours = run_alignprop::<A>(k, Precision::Bf16);
        let exact_grads = ours.golden_grads("alignprop", k);
        let checks = [
            (
                "latents",
                max_abs(&ours.latents, &exact("latents")),
                max_abs(&torch("latents"), &exact("latents")),
            ),
            (
                "loss",
                relative(&[ours.loss], &exact("loss")),
                relative(&torch("loss"), &exact("loss")),
            ),
            (
                "gradients",
                relative(&ours.grads, &exact_grads),
                relative(&ours.golden_grads("alignprop_bf16", k), &exact_grads),
            ),
        ];
        for (name, ours, torch) in checks {
            println!("K = {k}, bf16 {name}: off f32 by {ours:.3e} (ours), {torch:.3e} (PyTorch's)");
            assert!(
                ours <= 1.5 * torch,
                "K = {k}, {name}: {ours} against PyTorch's {torch}"
            );
        }
    }
}
