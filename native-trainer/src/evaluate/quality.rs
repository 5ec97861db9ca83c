//! `popalign evaluate --metrics pickscore,hps,clip,aesthetic,imagereward`: quality scores of the images behind the attribute
//! CSVs, so every bias number sits next to what it cost in image quality.
//!
//! Each image is decoded once and scored by every selected scorer, preprocessed byte for byte as the scorer's
//! reference does (see `popalign_core::models::clip::image_processor`). Per set the summary gets mean, median and a
//! bootstrap interval of the mean; with `--baseline SET`, every other set gets the paired difference against it
//! over the images both sets have (same prompt, same file name: the generation job id carries prompt and seed,
//! so base and aligned images of one job pair up). Per-image scores go to `scores.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use popalign_core::eval::classify::Scorer;
use popalign_core::eval::classify::aesthetic::AestheticScorer;
use popalign_core::eval::classify::clip_scores::{ClipScoreKind, ClipScorer};
use popalign_core::eval::classify::hps::HpsScorer;
use popalign_core::eval::classify::image_reward::ImageRewardScorer;
use popalign_core::eval::metrics::quality::{
    Bootstrap, PairedDifference, QualitySummary, paired_difference, summarize_scores,
};
use serde::{Deserialize, Serialize};

use crate::artifacts::progress;
use crate::backend::{Backend as B, device};
use crate::classify::attributes::AttributeRow;
use crate::error::{CliResult, input};

/// Which quality scores to compute and where each scorer's model is: `popalign evaluate`'s flags, and
/// `run.toml`'s `[evaluate]` table (same names, `-` as `_`). Every folder may also be a Hugging Face repo id.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerArgs {
    /// Quality scores to add (comma-separated); each needs its model option below.
    #[arg(long, value_enum, value_delimiter = ',')]
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// PickScore: a transformers `CLIPModel` folder (`yuvalkirstain/PickScore_v1` with its tokenizer and
    /// `preprocessor_config.json`).
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickscore: Option<PathBuf>,
    /// HPSv2: an open_clip folder (`open_clip_config.json`, `open_clip_model.safetensors`, `tokenizer/`), e.g. from
    /// `tools/convert_open_clip.py HPS_v2_compressed.pt`.
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hps: Option<PathBuf>,
    /// CLIP score: a transformers `CLIPModel` folder (e.g. `openai/clip-vit-large-patch14`).
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_model: Option<PathBuf>,
    /// LAION aesthetics v2: the predictor as safetensors (`tools/convert_aesthetic.py`).
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesthetic: Option<PathBuf>,
    /// The CLIP ViT-L/14 `CLIPModel` folder the aesthetic predictor reads embeddings from.
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesthetic_clip: Option<PathBuf>,
    /// ImageReward: the folder `tools/convert_imagereward.py` writes from `ImageReward.pt`, `med_config.json` and
    /// bert-base-uncased's `vocab.txt`.
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imagereward: Option<PathBuf>,
}

#[derive(clap::Args, Default)]
pub struct QualityArgs {
    #[command(flatten)]
    pub scorers: ScorerArgs,
    /// Folder the CSVs' `file` column is relative to [default: the run folder for `<run>/attributes/*.csv`,
    /// otherwise the CSV's folder].
    #[arg(long, value_name = "DIR")]
    pub images_root: Option<PathBuf>,
    /// The set (CSV file stem) every other set is compared with, image by image.
    #[arg(long, value_name = "SET")]
    pub baseline: Option<String>,
    /// Images scored per forward pass.
    #[arg(long, default_value_t = 8)]
    pub score_batch: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Pickscore,
    Hps,
    Clip,
    Aesthetic,
    Imagereward,
}

/// One set's scores: per metric, one value per CSV row (`NaN` where the image could not be read).
pub struct SetScores {
    pub name: String,
    pub rows: Vec<AttributeRow>,
    pub scores: BTreeMap<String, Vec<f64>>,
}

/// The comparison of one set with the baseline.
#[derive(Serialize)]
pub struct Comparison {
    pub baseline: String,
    pub set: String,
    pub metrics: BTreeMap<String, PairedDifference>,
}

type NamedScorer = (String, Box<dyn Scorer<B>>);

/// Loads the scorers `--metrics` names, in the order given; relative folders start at `base`.
pub fn load_scorers(args: &ScorerArgs, base: &Path) -> CliResult<Vec<NamedScorer>> {
    let device = device();
    let need = |path: &Option<PathBuf>, flag: &str, metric: &str| match path {
        Some(path) => crate::hub::resolve_model(path, base),
        None => Err(input(format!("--metrics {metric} needs {flag}"))),
    };
    let mut scorers: Vec<NamedScorer> = Vec::new();
    for metric in &args.metrics {
        let scorer: NamedScorer = match metric {
            Metric::Pickscore => {
                let dir = need(&args.pickscore, "--pickscore DIR", "pickscore")?;
                let s = ClipScorer::from_dir(&dir, ClipScoreKind::PickScore, &device)?;
                ("pickscore".into(), Box::new(s))
            }
            Metric::Clip => {
                let dir = need(&args.clip_model, "--clip-model DIR", "clip")?;
                let s = ClipScorer::from_dir(&dir, ClipScoreKind::ClipScore, &device)?;
                ("clip".into(), Box::new(s))
            }
            Metric::Hps => {
                let dir = need(&args.hps, "--hps DIR", "hps")?;
                ("hps".into(), Box::new(HpsScorer::from_dir(&dir, &device)?))
            }
            Metric::Aesthetic => {
                let file = need(&args.aesthetic, "--aesthetic FILE", "aesthetic")?;
                let clip = need(&args.aesthetic_clip, "--aesthetic-clip DIR", "aesthetic")?;
                (
                    "aesthetic".into(),
                    Box::new(AestheticScorer::load(&file, &clip, &device)?),
                )
            }
            Metric::Imagereward => {
                let dir = need(&args.imagereward, "--imagereward DIR", "imagereward")?;
                let s = ImageRewardScorer::from_dir(&dir, &device)?;
                ("imagereward".into(), Box::new(s))
            }
        };
        if !scorers.iter().any(|(name, _)| name == &scorer.0) {
            scorers.push(scorer);
        }
    }
    Ok(scorers)
}

/// Where a CSV's `file` paths start (see [`QualityArgs::images_root`]).
fn images_root(csv: &Path, args: &QualityArgs) -> PathBuf {
    if let Some(root) = &args.images_root {
        return root.clone();
    }
    let folder = csv.parent().unwrap_or(Path::new("."));
    match (folder.file_name(), folder.parent()) {
        (Some(name), Some(run)) if name == "attributes" => run.to_path_buf(),
        _ => folder.to_path_buf(),
    }
}

/// Scores every readable row of one set with every scorer.
pub fn score_set(
    name: &str,
    csv: &Path,
    rows: Vec<AttributeRow>,
    scorers: &[NamedScorer],
    args: &QualityArgs,
) -> CliResult<SetScores> {
    let root = images_root(csv, args);
    let mut scores: BTreeMap<String, Vec<f64>> = scorers
        .iter()
        .map(|(n, _)| (n.clone(), vec![f64::NAN; rows.len()]))
        .collect();
    let readable: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].error.is_empty())
        .collect();
    let bar = progress(readable.len() as u64, &format!("scoring {name}"));
    for chunk in readable.chunks(args.score_batch.max(1)) {
        let mut images = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let path = root.join(&rows[i].file);
            let image = image::open(&path)
                .map_err(|e| input(format!("{}: {e} (is --images-root right?)", path.display())))?
                .to_rgb8();
            images.push(image);
        }
        let decoded: Vec<(&[u8], usize, usize)> = images
            .iter()
            .map(|im| {
                (
                    im.as_raw().as_slice(),
                    im.width() as usize,
                    im.height() as usize,
                )
            })
            .collect();
        let prompts: Vec<String> = chunk.iter().map(|&i| rows[i].prompt.clone()).collect();
        for (metric, scorer) in scorers {
            let values = scorer
                .score_rgb8(&decoded, &prompts, &device())
                .map_err(|e| input(format!("{name}: {metric}: {e}")))?;
            let column = scores.get_mut(metric).expect("one column per scorer");
            for (&i, value) in chunk.iter().zip(values) {
                column[i] = value;
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(SetScores {
        name: name.into(),
        rows,
        scores,
    })
}

/// Mean, median and interval of each metric of one set.
pub fn summarize(set: &SetScores, bootstrap: Bootstrap) -> BTreeMap<String, QualitySummary> {
    set.scores
        .iter()
        .filter_map(|(metric, values)| Some((metric.clone(), summarize_scores(values, bootstrap)?)))
        .collect()
}

/// Each non-baseline set against `baseline`, over rows with the same prompt and file name.
pub fn compare(
    sets: &[SetScores],
    baseline: &str,
    bootstrap: Bootstrap,
) -> CliResult<Vec<Comparison>> {
    let base = sets.iter().find(|s| s.name == baseline).ok_or_else(|| {
        let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        input(format!(
            "--baseline {baseline}: no such set ({})",
            names.join(", ")
        ))
    })?;
    let key = |row: &AttributeRow| {
        let name = Path::new(&row.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        (row.prompt.clone(), name.unwrap_or_default())
    };
    let index: BTreeMap<_, usize> = base
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| (key(r), i))
        .collect();
    let mut comparisons = Vec::new();
    for set in sets.iter().filter(|s| s.name != baseline) {
        let matched: Vec<(usize, usize)> = set
            .rows
            .iter()
            .enumerate()
            .filter_map(|(j, r)| index.get(&key(r)).map(|&i| (i, j)))
            .collect();
        let metrics = set
            .scores
            .iter()
            .filter_map(|(metric, values)| {
                let base_values = base.scores.get(metric)?;
                let pairs: Vec<(f64, f64)> = matched
                    .iter()
                    .map(|&(i, j)| (base_values[i], values[j]))
                    .collect();
                Some((metric.clone(), paired_difference(&pairs, bootstrap)?))
            })
            .collect();
        comparisons.push(Comparison {
            baseline: baseline.into(),
            set: set.name.clone(),
            metrics,
        });
    }
    Ok(comparisons)
}

/// `scores.csv`: `set,file,prompt,base_prompt,<metric>...`, empty where an image could not be read.
pub fn scores_csv(sets: &[SetScores]) -> CliResult<Vec<u8>> {
    let metrics: Vec<String> = sets
        .first()
        .map(|s| s.scores.keys().cloned().collect())
        .unwrap_or_default();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = ["set", "file", "prompt", "base_prompt"]
        .iter()
        .map(|s| s.to_string())
        .chain(metrics.clone());
    writer
        .write_record(header.collect::<Vec<_>>())
        .map_err(|e| input(e.to_string()))?;
    for set in sets {
        for (i, row) in set.rows.iter().enumerate() {
            let values = metrics.iter().map(|m| {
                let v = set.scores[m][i];
                if v.is_finite() {
                    format!("{v}")
                } else {
                    String::new()
                }
            });
            let record: Vec<String> = [
                set.name.clone(),
                row.file.clone(),
                row.prompt.clone(),
                row.base_prompt.clone(),
            ]
            .into_iter()
            .chain(values)
            .collect();
            writer
                .write_record(&record)
                .map_err(|e| input(e.to_string()))?;
        }
    }
    writer.into_inner().map_err(|e| input(e.to_string()))
}
