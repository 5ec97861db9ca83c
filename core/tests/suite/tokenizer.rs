//! The CLIP tokenizer reproduces transformers' `CLIPTokenizer` ids exactly (real CLIP BPE vocabulary,
//! 74 prompts: punctuation, unicode, runs of `!`, empty, over-long), for both SDXL tokenizer folders.

use crate::common;

use popalign_core::models::tokenizer::ClipTokenizer;

fn check(folder: &str) {
    let dir = common::fixtures().join("clip-tokenizer");
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("prompts.json")).unwrap()).unwrap();
    let ids: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ids.json")).unwrap()).unwrap();
    let expected: Vec<Vec<u32>> = serde_json::from_value(ids[folder].clone()).unwrap();
    let tokenizer = ClipTokenizer::from_dir(&dir.join(folder)).unwrap();
    let mut mismatches = Vec::new();
    for (prompt, want) in prompts.iter().zip(&expected) {
        let got = tokenizer.encode(prompt).unwrap();
        if &got != want {
            mismatches.push(format!("{prompt:?}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    println!(
        "{folder}: {} prompts, {} mismatches",
        prompts.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn tokenizer_ids_match_transformers() {
    check("tokenizer");
}

#[test]
fn tokenizer_2_pads_with_exclamation_like_transformers() {
    check("tokenizer_2");
}

#[test]
fn missing_vocab_is_a_clear_error() {
    let dir = tempfile_dir();
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\n").unwrap();
    let error = ClipTokenizer::from_dir(&dir)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        error.contains("vocab.json") && error.contains("not found"),
        "{error}"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("popalign-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
