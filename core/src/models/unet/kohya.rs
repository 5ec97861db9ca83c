//! A diffusers/peft U-Net LoRA file rewritten in kohya's layout, the one ComfyUI and Automatic1111 load
//! (and diffusers' `load_lora_weights` too):
//!
//! | peft (ours)                                   | kohya                                       |
//! |-----------------------------------------------|---------------------------------------------|
//! | `unet.<module>.lora_A.weight` `[r, in]`       | `lora_unet_<module_>.lora_down.weight`      |
//! | `unet.<module>.lora_B.weight` `[out, r]`      | `lora_unet_<module_>.lora_up.weight`        |
//! | (α = r, implicit)                             | `lora_unet_<module_>.alpha` (0-d tensor)    |
//!
//! `<module_>` is the module path with `.` written `_`. kohya's SDXL trainer names modules after the
//! original (SGM) U-Net, so an SDXL file says `input_blocks.4.1` where diffusers says
//! `down_blocks.1.attentions.0`; for SD 1.x it keeps diffusers' names. We write what kohya writes for
//! each, so files from us and from kohya's scripts look the same to every loader.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::TensorData;

use crate::models::unet::config::{PerBlock, UNetConfig};

/// The module-name scheme of the exported keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Naming {
    /// `input_blocks` / `middle_block` / `output_blocks` (kohya's SDXL files).
    Sgm { layers_per_block: usize },
    /// diffusers' own names (kohya's SD 1.x files).
    Diffusers,
}

impl Naming {
    /// What kohya writes for this U-Net: SGM names for SDXL (`addition_embed_type = "text_time"`).
    pub fn for_unet(config: &UNetConfig) -> Result<Self, String> {
        if config.addition_embed_type.as_deref() != Some("text_time") {
            return Ok(Self::Diffusers);
        }
        match config.layers_per_block {
            PerBlock::One(layers_per_block) => Ok(Self::Sgm { layers_per_block }),
            PerBlock::Each(_) => Err(
                "kohya's SDXL layout needs one `layers_per_block` for every block, not a list"
                    .into(),
            ),
        }
    }

    /// A diffusers module path (`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`) in this scheme.
    fn module(self, path: &str) -> Result<String, String> {
        let Self::Sgm { layers_per_block } = self else {
            return Ok(path.to_string());
        };
        let parts: Vec<&str> = path.split('.').collect();
        let index = |i: usize| -> Result<usize, String> {
            parts
                .get(i)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("`{path}`: expected a block number at position {i}"))
        };
        // Each down block is `layers_per_block` (resnet, attention) pairs and a downsampler; each up block
        // has one pair more. Slot 0 of `input_blocks` is `conv_in`.
        let (block, rest) = match parts.as_slice() {
            ["down_blocks", _, "attentions", _, rest @ ..] => (
                format!(
                    "input_blocks.{}.1",
                    1 + index(1)? * (layers_per_block + 1) + index(3)?
                ),
                rest,
            ),
            ["mid_block", "attentions", "0", rest @ ..] => ("middle_block.1".to_string(), rest),
            ["up_blocks", _, "attentions", _, rest @ ..] => (
                format!(
                    "output_blocks.{}.1",
                    index(1)? * (layers_per_block + 1) + index(3)?
                ),
                rest,
            ),
            _ => {
                return Err(format!(
                    "`{path}`: only attention layers can be written in kohya's SDXL layout"
                ));
            }
        };
        Ok(format!("{block}.{}", rest.join(".")))
    }
}

/// Rewrites peft-layout U-Net LoRA tensors (`unet.<module>.lora_A.weight`, …) in kohya's layout, with an
/// `alpha` tensor per module.
pub fn peft_to_kohya(
    peft: &BTreeMap<String, TensorData>,
    naming: Naming,
    alpha: f32,
) -> Result<BTreeMap<String, TensorData>, String> {
    let mut out = BTreeMap::new();
    for (key, data) in peft {
        let (module, side) = split_peft_key(key)?;
        let name = format!("lora_unet_{}", naming.module(module)?.replace('.', "_"));
        out.insert(format!("{name}.{side}.weight"), data.clone());
        out.insert(
            format!("{name}.alpha"),
            TensorData::new(vec![alpha], [0usize; 0]),
        );
    }
    Ok(out)
}

/// `unet.<module>.lora_A.weight` → (`<module>`, `lora_down`).
fn split_peft_key(key: &str) -> Result<(&str, &str), String> {
    let body = key
        .strip_prefix("unet.")
        .ok_or_else(|| format!("`{key}`: not a U-Net LoRA key (expected the `unet.` prefix)"))?;
    for (suffix, side) in [
        (".lora_A.weight", "lora_down"),
        (".lora_B.weight", "lora_up"),
    ] {
        if let Some(module) = body.strip_suffix(suffix) {
            return Ok((module, side));
        }
    }
    Err(format!(
        "`{key}`: not a peft LoRA weight (expected `.lora_A.weight` or `.lora_B.weight`)"
    ))
}

/// The `ss_*` metadata kohya's scripts write, which ComfyUI and Automatic1111 show for a LoRA.
pub fn kohya_metadata(naming: Naming, rank: usize, alpha: f32) -> HashMap<String, String> {
    let base = match naming {
        Naming::Sgm { .. } => "sdxl_base_v1-0",
        Naming::Diffusers => "sd_v1",
    };
    HashMap::from([
        ("format".into(), "pt".into()),
        ("ss_network_module".into(), "networks.lora".into()),
        ("ss_network_dim".into(), rank.to_string()),
        ("ss_network_alpha".into(), alpha.to_string()),
        ("ss_base_model_version".into(), base.into()),
    ])
}

/// Reads a peft U-Net LoRA file written by `popalign train` (α = rank) and writes it in kohya's layout for
/// the U-Net `config` describes, through a temporary file.
pub fn write_kohya(peft_file: &Path, config: &UNetConfig, out: &Path) -> Result<(), String> {
    let peft = crate::io::tensor_io::read_tensors(peft_file).map_err(|e| e.to_string())?;
    let in_file = |e: String| format!("{}: {e}", peft_file.display());
    // The rank is the first dimension of any `lora_A` `[r, in]`.
    let rank = peft
        .iter()
        .find(|(key, _)| key.ends_with(".lora_A.weight"))
        .map(|(_, data)| data.shape[0])
        .ok_or_else(|| in_file("no `lora_A` tensors: not a diffusers LoRA file".into()))?;
    let naming = Naming::for_unet(config)?;
    let alpha = rank as f32;
    let tensors = peft_to_kohya(&peft, naming, alpha).map_err(in_file)?;
    crate::io::tensor_io::write_tensors_with_metadata(
        out,
        &tensors,
        Some(kohya_metadata(naming, rank, alpha)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDXL: Naming = Naming::Sgm {
        layers_per_block: 2,
    };

    #[test]
    fn sdxl_blocks_take_their_sgm_slots() {
        // SDXL base: down 1 and 2 and up 0 and 1 carry attention; the slots kohya's SDXL files use.
        let cases = [
            (
                "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
                "input_blocks.4.1.transformer_blocks.0.attn1.to_q",
            ),
            (
                "down_blocks.2.attentions.1.proj_in",
                "input_blocks.8.1.proj_in",
            ),
            (
                "mid_block.attentions.0.transformer_blocks.9.ff.net.2",
                "middle_block.1.transformer_blocks.9.ff.net.2",
            ),
            (
                "up_blocks.0.attentions.2.transformer_blocks.0.attn2.to_out.0",
                "output_blocks.2.1.transformer_blocks.0.attn2.to_out.0",
            ),
            (
                "up_blocks.1.attentions.0.proj_out",
                "output_blocks.3.1.proj_out",
            ),
        ];
        for (diffusers, sgm) in cases {
            assert_eq!(SDXL.module(diffusers).unwrap(), sgm);
        }
        assert!(SDXL.module("down_blocks.1.resnets.0.conv1").is_err());
    }

    #[test]
    fn keys_values_and_alpha() {
        let a = TensorData::new(vec![1.0f32, 2.0], [1, 2]);
        let b = TensorData::new(vec![3.0f32, 4.0], [2, 1]);
        let peft = BTreeMap::from([
            (
                "unet.mid_block.attentions.0.proj_in.lora_A.weight".to_string(),
                a.clone(),
            ),
            (
                "unet.mid_block.attentions.0.proj_in.lora_B.weight".to_string(),
                b.clone(),
            ),
        ]);
        let kohya = peft_to_kohya(&peft, SDXL, 1.0).unwrap();
        let keys: Vec<&str> = kohya.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "lora_unet_middle_block_1_proj_in.alpha",
                "lora_unet_middle_block_1_proj_in.lora_down.weight",
                "lora_unet_middle_block_1_proj_in.lora_up.weight",
            ]
        );
        assert_eq!(
            kohya["lora_unet_middle_block_1_proj_in.lora_down.weight"],
            a
        );
        assert_eq!(kohya["lora_unet_middle_block_1_proj_in.lora_up.weight"], b);
        assert_eq!(
            kohya["lora_unet_middle_block_1_proj_in.alpha"].shape.len(),
            0
        );
        let sd15 = peft_to_kohya(&peft, Naming::Diffusers, 1.0).unwrap();
        assert!(sd15.contains_key("lora_unet_mid_block_attentions_0_proj_in.lora_up.weight"));
        let text_encoder = BTreeMap::from([("text_encoder.proj.lora_A.weight".to_string(), a)]);
        assert!(peft_to_kohya(&text_encoder, SDXL, 1.0).is_err());
    }
}
