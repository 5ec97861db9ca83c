//! The text tower's `config.json` as transformers writes it.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    /// Present for `CLIPTextModelWithProjection`.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> i64 {
    2
}

impl ClipTextConfig {
    /// transformers decides projection from the class; the config names it in `architectures`.
    pub fn with_projection(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a == "CLIPTextModelWithProjection")
    }
}
