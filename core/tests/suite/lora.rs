//! LoRA adapters: a fresh adapter changes nothing, disabling restores the base model, and a saved adapter
//! file (diffusers key names) loads back exactly.

use crate::common;

use burn::prelude::*;
use common::*;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};
use popalign_core::nn::lora::{DisableLora, LoraConfig};

fn forward(unet: &UNet2DConditionModel<B>) -> Tensor<B, 4> {
    let inputs = io("unet_sdxl_inputs");
    let cond = UNetConditioning {
        encoder_hidden_states: float(&inputs["encoder_hidden_states"]),
        text_embeds: Some(float(&inputs["text_embeds"])),
        time_ids: Some(float(&inputs["time_ids"])),
    };
    unet.forward(float(&inputs["sample"]), float(&inputs["timestep"]), &cond)
}

fn lora_unet(config: &LoraConfig) -> UNet2DConditionModel<B> {
    UNet2DConditionModel::from_dir_with_lora(
        &fixtures().join("tiny-sdxl/unet"),
        None,
        Some(config),
        &device(),
    )
    .unwrap()
}

/// Gives every `lora_B` random values so the adapter does something.
fn randomise_lora_b(unet: UNet2DConditionModel<B>) -> UNet2DConditionModel<B> {
    struct Randomise(Vec<String>);
    impl burn::module::ModuleMapper<B> for Randomise {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(
            &mut self,
            p: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            if self.0.iter().any(|s| s == "lora_B") {
                p.map(|t| t.random_like(burn::tensor::Distribution::Normal(0.0, 0.05)))
            } else {
                p
            }
        }
    }
    unet.map(&mut Randomise(Vec::new()))
}

#[test]
fn fresh_adapter_is_identity_and_disable_restores_base() {
    let config = LoraConfig::new(2, 2.0);
    let golden = &io("unet_sdxl_outputs")["out"];
    assert_close("fresh LoRA", forward(&lora_unet(&config)), golden, 1e-4);
    let trained = randomise_lora_b(lora_unet(&config));
    let changed = max_abs_error("randomised LoRA vs base", forward(&trained), golden);
    assert!(changed > 1e-3, "the adapter must change the output");
    assert_close(
        "disabled LoRA",
        forward(&DisableLora::apply(trained)),
        golden,
        1e-4,
    );
}

#[test]
fn saved_adapter_loads_back_exactly() {
    let config = LoraConfig {
        targets: vec![
            "to_q".into(),
            "to_out.0".into(),
            "ff.net.2".into(),
            "proj_in".into(),
        ],
        ..LoraConfig::new(3, 6.0)
    };
    let trained = randomise_lora_b(lora_unet(&config));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pytorch_lora_weights.safetensors");
    trained.save_lora(&file).unwrap();
    let keys: Vec<String> = popalign_core::io::tensor_io::read_tensors(&file)
        .unwrap()
        .into_keys()
        .collect();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("unet.") && k.contains(".lora_")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("attn1.to_q.lora_A.weight")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("ff.net.2.lora_B.weight")),
        "{keys:?}"
    );
    let reloaded = lora_unet(&config).load_lora(&file).unwrap();
    let expected = forward(&trained).into_data();
    assert_close("reloaded LoRA", forward(&reloaded), &expected, 1e-6);
}
