//! Sharded generation and classification: `popalign run --stage prompts,generate,classify --shard K/N`.
//!
//! Shard K of N takes chunks K−1, K−1+N, K−1+2N, … of every image set, the chunks being those an unsharded
//! run samples as one batch (`[generate] batch_size` jobs in job order). Since each image's noise derives
//! from its id and a chunk is batched as in an unsharded run, every file a shard writes is byte for byte
//! the unsharded run's. A shard keeps its own ledgers beside the shared ones, `manifest.shard-K-of-N.jsonl`
//! and `attributes/<set>.shard-K-of-N.csv`, so N processes never write the same file. The next unsharded
//! stage joins them, in job order, into `manifest.jsonl` and `attributes/<set>.csv`: exactly what one
//! unsharded run writes. A set whose shards are not all finished is refused, naming the missing ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use popalign_core::eval::classify::AxisSpec;

use super::images::{ImageJob, ManifestEntry, read_ledger, write_manifest};
use crate::classify::attributes::{AttributeRow, Entry, read_rows, write_rows};
use crate::error::{CliError, CliResult, input, runtime};

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N`, or `slurm` for the task of a Slurm job array (`--array=0-3`, or any contiguous range).
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "slurm" {
            return Shard::from_slurm();
        }
        let parsed = text
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if (1..=count).contains(&index) => Ok(Shard { index, count }),
            _ => Err(format!(
                "{text:?}: expected K/N with 1 ≤ K ≤ N (shard K of N), or `slurm`"
            )),
        }
    }
}

impl Shard {
    /// From the variables Slurm sets in every task of a job array.
    fn from_slurm() -> Result<Self, String> {
        let var = |name: &str| -> Result<usize, String> {
            let value = std::env::var(name).map_err(|_| {
                format!("--shard slurm: {name} is not set (not a Slurm array task?)")
            })?;
            value
                .parse()
                .map_err(|_| format!("--shard slurm: {name}={value:?} is not a whole number"))
        };
        if std::env::var("SLURM_ARRAY_TASK_STEP").is_ok_and(|step| step != "1") {
            return Err("--shard slurm needs an array of consecutive task ids (step 1)".into());
        }
        let (id, min, count) = (
            var("SLURM_ARRAY_TASK_ID")?,
            var("SLURM_ARRAY_TASK_MIN")?,
            var("SLURM_ARRAY_TASK_COUNT")?,
        );
        if id < min {
            return Err(format!(
                "--shard slurm: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
            ));
        }
        format!("{}/{count}", id - min + 1).parse()
    }

    /// `<stem>.shard-K-of-N.<extension>`.
    pub fn file(&self, stem: &str, extension: &str) -> String {
        format!("{stem}.shard-{}-of-{}.{extension}", self.index, self.count)
    }

    /// This shard's jobs: whole chunks of `batch_size`, every N-th from chunk K−1.
    pub fn jobs(&self, jobs: &[ImageJob], batch_size: usize) -> Vec<ImageJob> {
        jobs.chunks(batch_size.max(1))
            .enumerate()
            .filter(|(chunk, _)| chunk % self.count == self.index - 1)
            .flat_map(|(_, chunk)| chunk.iter().cloned())
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard ledgers `<stem>.shard-K-of-N.<extension>` in `dir`, with their shard, ordered by K. Ledgers of
/// two different N are refused: they come from two sharded runs of one set.
fn shard_ledgers(dir: &Path, stem: &str, extension: &str) -> CliResult<Vec<(Shard, PathBuf)>> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<(Shard, PathBuf)> = listing
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let middle = name
                .strip_prefix(&format!("{stem}.shard-"))?
                .strip_suffix(&format!(".{extension}"))?;
            let (k, n) = middle.split_once("-of-")?;
            let shard = format!("{k}/{n}").parse().ok()?;
            Some((shard, entry.path()))
        })
        .collect();
    found.sort_by_key(|(shard, _)| shard.index);
    if found.windows(2).any(|w| w[0].0.count != w[1].0.count) {
        return Err(input(format!(
            "{}: shard ledgers of different shard counts ({}); keep one sharding and delete the others",
            dir.display(),
            found
                .iter()
                .map(|(s, _)| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(found)
}

/// The shards among `1..=count` that have not finished their jobs, as "K/N (progress)" phrases; `done`
/// counts the finished among a shard's jobs.
fn missing_shards(
    ledgers: &[(Shard, PathBuf)],
    jobs: &[ImageJob],
    batch_size: usize,
    done: impl Fn(&[ImageJob]) -> usize,
) -> Vec<String> {
    let count = ledgers.first().map_or(0, |(s, _)| s.count);
    (1..=count)
        .map(|index| Shard { index, count })
        .filter_map(|shard| {
            let wanted = shard.jobs(jobs, batch_size);
            let done = done(&wanted);
            let started = ledgers.iter().any(|(s, _)| *s == shard);
            (done < wanted.len()).then(|| match started {
                false => format!("{shard} (not started)"),
                true => format!("{shard} ({done} of {} images)", wanted.len()),
            })
        })
        .collect()
}

/// The images recorded for the set `dir`, in the shared manifest or a shard's, by job id.
fn recorded(dir: &Path, ledgers: &[(Shard, PathBuf)]) -> CliResult<HashMap<String, ManifestEntry>> {
    let shared = dir.join("manifest.jsonl");
    let mut entries = HashMap::new();
    for path in std::iter::once(&shared).chain(ledgers.iter().map(|(_, p)| p)) {
        for entry in read_ledger(path)? {
            entries.insert(entry.job.id.clone(), entry);
        }
    }
    Ok(entries)
}

/// The images of a shard's `jobs` in the set `set` of the run `run`, wherever they are recorded; an error
/// when one is not generated yet.
pub fn recorded_images(run: &Path, set: &str, jobs: &[ImageJob]) -> CliResult<Vec<Entry>> {
    let dir = run.join(set);
    let mut entries = recorded(&dir, &shard_ledgers(&dir, "manifest", "jsonl")?)?;
    jobs.iter()
        .map(|job| match entries.remove(&job.id) {
            Some(m) => Ok(Entry::recorded(run, m)),
            None => Err(input(format!(
                "{}: image {} of this shard is not generated yet; run the generate stage with the same \
                 --shard first",
                dir.display(),
                job.id
            ))),
        })
        .collect()
}

/// Joins the shard manifests of the image set `dir` into `manifest.jsonl`, in the order of `jobs`, and
/// removes them. Nothing to do without shard manifests; an error naming the shards not finished.
pub fn join_manifests(dir: &Path, jobs: &[ImageJob], batch_size: usize, stage: &str) -> CliResult {
    let ledgers = shard_ledgers(dir, "manifest", "jsonl")?;
    let Some(count) = ledgers.first().map(|(s, _)| s.count) else {
        return Ok(());
    };
    let mut entries = recorded(dir, &ledgers)?;
    let missing = missing_shards(&ledgers, jobs, batch_size, |wanted| {
        wanted
            .iter()
            .filter(|j| entries.contains_key(&j.id))
            .count()
    });
    refuse_missing(dir, "generated", stage, count, &missing)?;
    let joined: Vec<ManifestEntry> = jobs
        .iter()
        .filter_map(|job| entries.remove(&job.id))
        .collect();
    write_manifest(dir, &joined)?;
    remove(&ledgers)
}

/// Joins the shard CSVs `attributes/<set>.shard-K-of-N.csv` into `csv` (`attributes/<set>.csv`), one row
/// per image of `manifest` in its order, and removes them; an error naming the shards not finished.
pub fn join_attributes(
    csv: &Path,
    manifest: &[ManifestEntry],
    jobs: &[ImageJob],
    batch_size: usize,
    axes: &[AxisSpec],
) -> CliResult {
    let dir = csv.parent().unwrap_or(Path::new("."));
    let stem = csv.file_stem().unwrap_or_default().to_string_lossy();
    let ledgers = shard_ledgers(dir, &stem, "csv")?;
    let Some(count) = ledgers.first().map(|(s, _)| s.count) else {
        return Ok(());
    };
    let mut rows: Vec<AttributeRow> = Vec::new();
    for path in std::iter::once(csv).chain(ledgers.iter().map(|(_, p)| p.as_path())) {
        if path.exists() {
            rows.extend(read_rows(path, axes)?);
        }
    }
    let file_of: HashMap<&str, &str> = manifest
        .iter()
        .map(|e| (e.job.id.as_str(), e.file.as_str()))
        .collect();
    let classified: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.file.as_str()).collect();
    let missing = missing_shards(&ledgers, jobs, batch_size, |wanted| {
        wanted
            .iter()
            .filter(|j| {
                file_of
                    .get(j.id.as_str())
                    .is_some_and(|f| classified.contains(f))
            })
            .count()
    });
    refuse_missing(csv, "classified", "classify", count, &missing)?;
    // Rows in manifest order; an image's own rows (one per face with --all-faces) keep theirs.
    let position: HashMap<&str, usize> = manifest
        .iter()
        .enumerate()
        .map(|(i, e)| (e.file.as_str(), i))
        .collect();
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| position.contains_key(r.file.as_str()));
    rows.sort_by_key(|r| position[r.file.as_str()]);
    // A row present in both the shared CSV and a shard's (a shard re-run after a join) counts once.
    rows.retain(|r| seen.insert((r.file.clone(), r.detection.as_ref().map(|d| d.index))));
    write_rows(csv, axes, &rows)?;
    remove(&ledgers)
}

fn refuse_missing(
    what: &Path,
    done: &str,
    stage: &str,
    count: usize,
    missing: &[String],
) -> CliResult {
    if missing.is_empty() {
        return Ok(());
    }
    let verb = if missing.len() == 1 { "is" } else { "are" };
    Err(input(format!(
        "{}: {done} in {count} shards, of which {} {verb} not finished; run `popalign run --stage {stage} \
         --shard K/{count}` for each, then this stage again",
        what.display(),
        missing.join(", "),
    )))
}

fn remove(ledgers: &[(Shard, PathBuf)]) -> CliResult {
    for (_, path) in ledgers {
        std::fs::remove_file(path).map_err(|e| runtime(path, e))?;
    }
    Ok(())
}

/// The stages a shard may run: the ones whose work splits by image.
pub fn check_stages(stages: &[super::config::Stage]) -> CliResult {
    use super::config::Stage::*;
    match stages
        .iter()
        .find(|s| !matches!(s, Prompts | Generate | Classify | Evaluate))
    {
        Some(stage) => Err(CliError::Input(format!(
            "--shard splits the stages prompts, generate, classify and evaluate (its aligned images) only, \
             not {}; run it unsharded once every shard has finished",
            format!("{stage:?}").to_lowercase()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_whole_chunks_round_robin() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["0/2", "3/2", "2", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let jobs: Vec<ImageJob> = (0..7)
            .map(|index| ImageJob {
                id: format!("j{index}"),
                prompt: String::new(),
                base_prompt: String::new(),
                attributes: Default::default(),
                seed: 0,
                index,
            })
            .collect();
        let ids = |shard: &str| -> Vec<String> {
            let shard: Shard = shard.parse().unwrap();
            shard.jobs(&jobs, 2).into_iter().map(|j| j.id).collect()
        };
        assert_eq!(ids("1/2"), ["j0", "j1", "j4", "j5"]);
        assert_eq!(ids("2/2"), ["j2", "j3", "j6"]);
        assert_eq!(ids("3/3"), ["j4", "j5"]);
    }
}
