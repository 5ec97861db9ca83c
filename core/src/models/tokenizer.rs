//! The CLIP BPE tokenizer, built with the `tokenizers` crate from a folder's `vocab.json` + `merges.txt`
//! the way transformers' `CLIPTokenizer` builds it: NFC, whitespace runs → one space, lower-case; the CLIP
//! word regex; byte-level BPE with `</w>`; `<|startoftext|> … <|endoftext|>`; truncated and padded to 77.
//!
//! The pad token comes from the folder's config. SDXL's `tokenizer_2` pads with `"!"`, which transformers
//! registers as a special token, so a literal `!` in a prompt also becomes id 0: reproduced on purpose.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, PaddingParams, PaddingStrategy, SplitDelimiterBehavior, Tokenizer, TruncationParams,
};

use crate::io::load::{self, LoadError};

const WORD_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    pub max_length: usize,
    pub pad_id: u32,
}

/// The special tokens and length a folder's `tokenizer_config.json` / `special_tokens_map.json` name.
struct Specials {
    bos: String,
    eos: String,
    unk: String,
    pad: String,
    max_length: usize,
    /// (content, normalized) of bos, eos, unk, pad in registration order.
    added: Vec<(String, bool)>,
}

impl ClipTokenizer {
    /// Loads a transformers tokenizer folder (`vocab.json`, `merges.txt`, optional configs).
    pub fn from_dir(dir: &Path) -> Result<Self, LoadError> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let vocab: HashMap<String, u32> = load::read_config(&vocab_path)?;
        let merges = load::read_text(&merges_path)?;
        let specials = Specials::from_dir(dir)?;
        Self::from_parts(vocab, &merges, specials).map_err(|message| LoadError::Config {
            path: dir.to_path_buf(),
            message,
        })
    }

    fn from_parts(
        vocab: HashMap<String, u32>,
        merges: &str,
        specials: Specials,
    ) -> Result<Self, String> {
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or(format!("special token `{token}` is not in vocab.json"))
        };
        let (bos_id, eos_id, pad_id) = (id(&specials.bos)?, id(&specials.eos)?, id(&specials.pad)?);
        let merges = parse_merges(merges)?;
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .end_of_word_suffix("</w>".into())
            .unk_token(specials.unk.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let mut tokenizer = Tokenizer::new(bpe);
        let whitespace = Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )
        .map_err(|e| e.to_string())?;
        tokenizer
            .with_normalizer(Some(NormalizerSequence::new(vec![
                NFC.into(),
                whitespace.into(),
                Lowercase.into(),
            ])))
            .map_err(|e| e.to_string())?;
        let words = Split::new(
            SplitPattern::Regex(WORD_REGEX.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| e.to_string())?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            words.into(),
            ByteLevel::new(false, true, false).into(),
        ])));
        tokenizer.with_post_processor(Some(
            RobertaProcessing::new(
                (specials.eos.clone(), eos_id),
                (specials.bos.clone(), bos_id),
            )
            .trim_offsets(false)
            .add_prefix_space(false),
        ));
        // Registered in transformers' order; a later registration of the same content wins, which is
        // how `tokenizer/` ends up with an un-normalised `<|endoftext|>` (it is also the plain-string pad).
        let mut special_tokens: Vec<AddedToken> = Vec::new();
        for (content, normalized) in &specials.added {
            special_tokens.retain(|t| &t.content != content);
            special_tokens.push(AddedToken::from(content.clone(), true).normalized(*normalized));
        }
        tokenizer
            .add_special_tokens(special_tokens)
            .map_err(|e| e.to_string())?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: specials.max_length,
                ..Default::default()
            }))
            .map_err(|e| e.to_string())?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(specials.max_length),
            pad_id,
            pad_token: specials.pad.clone(),
            ..Default::default()
        }));
        Ok(Self {
            tokenizer,
            max_length: specials.max_length,
            pad_id,
        })
    }

    /// Token ids of one prompt, exactly `max_length` long.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>, String> {
        let encoding = self
            .tokenizer
            .encode(prompt, true)
            .map_err(|e| e.to_string())?;
        Ok(encoding.get_ids().to_vec())
    }
}

fn parse_merges(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .filter(|line| !line.starts_with("#version") && !line.trim().is_empty())
        .map(|line| {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                _ => Err(format!("merges.txt: malformed line `{line}`")),
            }
        })
        .collect()
}

impl Specials {
    fn from_dir(dir: &Path) -> Result<Self, LoadError> {
        let mut values: HashMap<String, Value> = HashMap::new();
        // special_tokens_map.json wins over tokenizer_config.json, as in transformers.
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let path = dir.join(name);
            if path.exists() {
                let map: HashMap<String, Value> = load::read_config(&path)?;
                values.extend(map);
            }
        }
        // A plain string is an un-normalised special token; an object carries its own `normalized` flag.
        let token = |key: &str, default: &str| match values.get(key) {
            Some(Value::String(s)) => (s.clone(), false),
            Some(Value::Object(o)) => (
                o.get("content")
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_string(),
                o.get("normalized")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            ),
            _ => (default.to_string(), false),
        };
        let max_length = values
            .get("model_max_length")
            .and_then(Value::as_u64)
            .filter(|&n| n <= 4096)
            .unwrap_or(77) as usize;
        let added = vec![
            token("bos_token", "<|startoftext|>"),
            token("eos_token", "<|endoftext|>"),
            token("unk_token", "<|endoftext|>"),
            token("pad_token", "<|endoftext|>"),
        ];
        Ok(Self {
            bos: added[0].0.clone(),
            eos: added[1].0.clone(),
            unk: added[2].0.clone(),
            pad: added[3].0.clone(),
            max_length,
            added,
        })
    }
}
