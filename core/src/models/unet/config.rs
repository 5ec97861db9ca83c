//! The U-Net's `config.json` as diffusers writes it. Only the options SD 1.5 / SDXL use are supported;
//! anything else is refused by [`UNetConfig::validate`] rather than silently ignored.

use serde::Deserialize;

/// diffusers accepts a single value or one per block for several fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a number or a list with one number per block")]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    pub fn expand(&self, blocks: usize) -> Vec<T> {
        match self {
            Self::One(v) => vec![v.clone(); blocks],
            Self::Each(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    #[serde(default = "four")]
    pub in_channels: usize,
    #[serde(default = "four")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_type: Option<String>,
    #[serde(default = "two")]
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "one")]
    pub transformer_layers_per_block: PerBlock<usize>,
    #[serde(default = "eight")]
    pub attention_head_dim: PerBlock<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    pub cross_attention_dim: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "norm_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "one_usize")]
    pub downsample_padding: usize,
    #[serde(default = "silu")]
    pub act_fn: String,
    #[serde(default = "default_str")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<serde_json::Value>,
    /// Default latent size (128 for SDXL: 1024 px images).
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default = "three")]
    pub conv_in_kernel: usize,
    #[serde(default = "three")]
    pub conv_out_kernel: usize,
}

fn one() -> PerBlock<usize> {
    PerBlock::One(1)
}
fn two() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn eight() -> PerBlock<usize> {
    PerBlock::One(8)
}
fn one_usize() -> usize {
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
fn norm_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn silu() -> String {
    "silu".into()
}
fn default_str() -> String {
    "default".into()
}
fn positional() -> String {
    "positional".into()
}

impl UNetConfig {
    /// Heads per down block: `num_attention_heads`, or diffusers' legacy reading of `attention_head_dim`
    /// as the number of heads when `num_attention_heads` is null.
    pub fn heads(&self) -> Vec<usize> {
        let n = self.block_out_channels.len();
        match &self.num_attention_heads {
            Some(h) => h.expand(n),
            None => self.attention_head_dim.expand(n),
        }
    }

    /// Refuses options this implementation does not compute, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.block_out_channels.len();
        let lengths = [
            ("down_block_types", self.down_block_types.len()),
            ("up_block_types", self.up_block_types.len()),
            ("layers_per_block", self.layers_per_block.expand(n).len()),
            (
                "transformer_layers_per_block",
                self.transformer_layers_per_block.expand(n).len(),
            ),
            ("attention_head_dim", self.heads().len()),
        ];
        for (field, len) in lengths {
            if len != n {
                return Err(format!(
                    "{field} has {len} entries, block_out_channels has {n}"
                ));
            }
        }
        for t in self.down_block_types.iter().chain(&self.up_block_types) {
            if !matches!(
                t.as_str(),
                "DownBlock2D" | "CrossAttnDownBlock2D" | "UpBlock2D" | "CrossAttnUpBlock2D"
            ) {
                return Err(format!("block type `{t}`"));
            }
        }
        let checks = [
            (
                "mid_block_type",
                self.mid_block_type
                    .as_deref()
                    .is_none_or(|t| t == "UNetMidBlock2DCrossAttn"),
            ),
            (
                "addition_embed_type",
                self.addition_embed_type
                    .as_deref()
                    .is_none_or(|t| t == "text_time"),
            ),
            ("act_fn", self.act_fn == "silu"),
            (
                "resnet_time_scale_shift",
                self.resnet_time_scale_shift == "default",
            ),
            (
                "time_embedding_type",
                self.time_embedding_type == "positional",
            ),
            ("class_embed_type", self.class_embed_type.is_none()),
            ("encoder_hid_dim", self.encoder_hid_dim.is_none()),
            ("time_cond_proj_dim", self.time_cond_proj_dim.is_none()),
            ("center_input_sample", !self.center_input_sample),
            ("dual_cross_attention", !self.dual_cross_attention),
            (
                "only_cross_attention",
                matches!(
                    self.only_cross_attention,
                    serde_json::Value::Null | serde_json::Value::Bool(false)
                ),
            ),
            (
                "reverse_transformer_layers_per_block",
                self.reverse_transformer_layers_per_block
                    .as_ref()
                    .is_none_or(|v| v.is_null()),
            ),
            (
                "conv_in_kernel / conv_out_kernel",
                self.conv_in_kernel == 3 && self.conv_out_kernel == 3,
            ),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((field, _)) => Err(format!(
                "`{field}` has a value this implementation does not support"
            )),
            None => Ok(()),
        }
    }
}
