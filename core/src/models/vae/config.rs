//! The VAE's `config.json` as diffusers writes it.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "scaling")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    #[serde(default = "silu")]
    pub act_fn: String,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn scaling() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}
fn silu() -> String {
    "silu".into()
}

impl VaeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.act_fn != "silu" {
            return Err(format!("act_fn `{}`", self.act_fn));
        }
        let n = self.block_out_channels.len();
        let bad_type = self
            .down_block_types
            .iter()
            .find(|t| t.as_str() != "DownEncoderBlock2D")
            .or(self
                .up_block_types
                .iter()
                .find(|t| t.as_str() != "UpDecoderBlock2D"));
        if let Some(t) = bad_type {
            return Err(format!("block type `{t}`"));
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(format!(
                "block type lists must have {n} entries like block_out_channels"
            ));
        }
        Ok(())
    }
}
