//! `CLIPTextModel` / `CLIPTextModelWithProjection`: token ids → hidden states, pooled output and,
//! with a projection, `text_embeds`. SDXL reads the penultimate hidden state of both encoders.

use std::path::Path;

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, Linear};
use burn::prelude::*;

use super::config::{ClipTextConfig, check_hidden_act};
pub use super::encoder_layer::ClipEncoder;
use crate::io::load::{self, LoadError};
use crate::nn::{layer_norm, linear};

#[derive(Module, Debug)]
pub struct ClipTextEmbeddings<B: Backend> {
    pub token_embedding: Embedding<B>,
    pub position_embedding: Embedding<B>,
}

/// The tower without projection: the `text_model.*` tensors of every CLIP checkpoint.
#[derive(Module, Debug)]
pub struct ClipTextTransformer<B: Backend> {
    pub embeddings: ClipTextEmbeddings<B>,
    pub encoder: ClipEncoder<B>,
    pub final_layer_norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct ClipTextModel<B: Backend> {
    pub text_model: ClipTextTransformer<B>,
    /// `text_projection` (no bias) of `CLIPTextModelWithProjection`.
    pub text_projection: Option<Linear<B>>,
    pub eos_token_id: i64,
}

/// What the SDXL pipeline and the parity tests read from a text encoder.
#[derive(Debug, Clone)]
pub struct ClipTextOutput<B: Backend> {
    pub last_hidden_state: Tensor<B, 3>,
    /// `hidden_states[-2]`: the output of the second-to-last layer, before the final norm.
    pub penultimate: Tensor<B, 3>,
    /// The final-norm hidden state at the end-of-text position.
    pub pooled: Tensor<B, 2>,
    /// `text_projection(pooled)` when the model has a projection.
    pub text_embeds: Option<Tensor<B, 2>>,
}

/// Checkpoints written by transformers ≥ 5 drop the `text_model.` prefix of `CLIPTextModel`.
const ADD_TEXT_MODEL_PREFIX: load::KeyRemap = (
    r"^(embeddings|encoder|final_layer_norm)\.",
    "text_model.$1.",
);

impl<B: Backend> ClipTextTransformer<B> {
    pub fn new(config: &ClipTextConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: EmbeddingConfig::new(config.vocab_size, d).init(device),
                position_embedding: EmbeddingConfig::new(config.max_position_embeddings, d)
                    .init(device),
            },
            encoder: ClipEncoder::new(&config.encoder_shape(), device),
            final_layer_norm: layer_norm(d, config.layer_norm_eps, device),
        }
    }

    /// Runs the tower on `[B, L]` token ids, pooling at the end-of-text position (see [`eos_positions`]);
    /// `text_embeds` is left to the caller, which owns the projection.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, eos_token_id: i64) -> ClipTextOutput<B> {
        let [batch, len] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..len as i64, &device).unsqueeze::<2>();
        let mut x = self.embeddings.token_embedding.forward(input_ids.clone())
            + self.embeddings.position_embedding.forward(positions);
        let mut penultimate = x.clone();
        let n = self.encoder.layers.len();
        for (i, layer) in self.encoder.layers.iter().enumerate() {
            x = layer.forward(x);
            if i + 2 == n {
                penultimate = x.clone();
            }
        }
        let last_hidden_state = self.final_layer_norm.forward(x);
        let eos = eos_positions(input_ids, eos_token_id);
        let d = last_hidden_state.dims()[2];
        let index = eos.reshape([batch, 1, 1]).expand([batch, 1, d]);
        let pooled = last_hidden_state
            .clone()
            .gather(1, index)
            .reshape([batch, d]);
        ClipTextOutput {
            last_hidden_state,
            penultimate,
            pooled,
            text_embeds: None,
        }
    }
}

impl<B: Backend> ClipTextModel<B> {
    pub fn new(config: &ClipTextConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        Self {
            text_model: ClipTextTransformer::new(config, device),
            text_projection: config
                .with_projection()
                .then(|| linear(d, config.projection_dim.unwrap_or(d), false, device)),
            eos_token_id: config.eos_token_id,
        }
    }

    /// Loads `config.json` and `model[.variant].safetensors` from a component folder.
    pub fn from_dir(
        dir: &Path,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let config_path = dir.join("config.json");
        let config: ClipTextConfig = load::read_config(&config_path)?;
        check_hidden_act(&config.hidden_act, &config_path)?;
        let files = load::weight_files(dir, "model", variant)?;
        load::load_weights(Self::new(&config, device), &files, &[ADD_TEXT_MODEL_PREFIX])
    }

    /// Runs the tower on `[B, L]` token ids.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> ClipTextOutput<B> {
        let mut out = self.text_model.forward(input_ids, self.eos_token_id);
        out.text_embeds = self
            .text_projection
            .as_ref()
            .map(|p| p.forward(out.pooled.clone()));
        out
    }
}

/// The pooling position per sequence, as transformers computes it: for the legacy `eos_token_id == 2`
/// configs the position of the largest id, otherwise the first position holding `eos_token_id`.
fn eos_positions<B: Backend>(input_ids: Tensor<B, 2, Int>, eos_token_id: i64) -> Tensor<B, 1, Int> {
    let [batch, _] = input_ids.dims();
    let positions = if eos_token_id == 2 {
        input_ids.argmax(1)
    } else {
        input_ids.equal_elem(eos_token_id).int().argmax(1)
    };
    positions.reshape([batch])
}
