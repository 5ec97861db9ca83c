//! BLIP's tokenizer, built with the `tokenizers` crate from bert-base-uncased's `vocab.txt` the way BLIP's
//! `init_tokenizer` builds transformers' `BertTokenizer`: BERT's normaliser (control characters dropped, CJK
//! characters spaced, lower case, accents stripped), BERT's pre-tokeniser (whitespace and punctuation), WordPiece
//! with `##` continuations, `[CLS] … [SEP]`, then `[DEC]` and `[ENC]` appended after the vocabulary as special
//! tokens. ImageReward's `score` pads and truncates to 35 tokens ([`MAX_LENGTH`]).

use std::path::Path;

use burn::prelude::*;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::io::load::{self, LoadError};

/// ImageReward's `max_length`.
pub const MAX_LENGTH: usize = 35;

/// BERT's specials (in the vocabulary), then BLIP's two additions (appended to it), in registration order.
const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const BLIP_ADDED: [&str; 2] = ["[DEC]", "[ENC]"];

pub struct BlipTokenizer {
    tokenizer: Tokenizer,
    /// Vocabulary lines plus the two added tokens: the text encoder's embedding rows.
    pub vocab_size: usize,
}

/// Token ids and attention masks, `[N, MAX_LENGTH]` each.
pub struct Encoded<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub attention_mask: Tensor<B, 2, Int>,
}

impl BlipTokenizer {
    /// Reads `vocab.txt` (one token per line, the line number its id).
    pub fn from_vocab(path: &Path) -> Result<Self, LoadError> {
        let text = load::read_text(path)?;
        let vocab: ahash::AHashMap<String, u32> = text
            .lines()
            .enumerate()
            .map(|(id, token)| (token.to_string(), id as u32))
            .collect();
        let lines = text.lines().count();
        Self::from_parts(vocab, lines).map_err(|message| LoadError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    fn from_parts(vocab: ahash::AHashMap<String, u32>, lines: usize) -> Result<Self, String> {
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or(format!("special token `{token}` is not in the vocabulary"))
        };
        let (cls, sep, pad) = (id("[CLS]")?, id("[SEP]")?, id("[PAD]")?);
        id("[UNK]")?;
        let wordpiece = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| e.to_string())?;
        let mut tokenizer = Tokenizer::new(wordpiece);
        tokenizer
            .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
            .map_err(|e| e.to_string())?;
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        let specials: Vec<AddedToken> = SPECIALS
            .iter()
            .chain(&BLIP_ADDED)
            .map(|t| AddedToken::from(*t, true))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| e.to_string())?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_LENGTH,
                ..Default::default()
            }))
            .map_err(|e| e.to_string())?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(MAX_LENGTH),
            pad_id: pad,
            pad_token: "[PAD]".into(),
            ..Default::default()
        }));
        Ok(Self {
            tokenizer,
            vocab_size: lines + BLIP_ADDED.len(),
        })
    }

    /// Token ids and attention mask of one prompt, each exactly [`MAX_LENGTH`] long.
    pub fn encode(&self, prompt: &str) -> Result<(Vec<u32>, Vec<u32>), String> {
        let encoding = self
            .tokenizer
            .encode(prompt, true)
            .map_err(|e| e.to_string())?;
        Ok((
            encoding.get_ids().to_vec(),
            encoding.get_attention_mask().to_vec(),
        ))
    }

    /// Prompts → their ids and masks as tensors.
    pub fn batch<B: Backend>(
        &self,
        prompts: &[String],
        device: &B::Device,
    ) -> Result<Encoded<B>, String> {
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for prompt in prompts {
            let (i, m) = self.encode(prompt)?;
            ids.extend(i.into_iter().map(i64::from));
            mask.extend(m.into_iter().map(i64::from));
        }
        let shape = [prompts.len(), MAX_LENGTH];
        Ok(Encoded {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
        })
    }
}
