//! The report folder (`report/` of a run, or `popalign report --runs A B --out DIR`): `report.json`
//! (schema in `popalign_core::schema::report`), `index.html` (a static page, see `page.rs`), the browser explorer
//! (`explorer.html`, `style.css`, `pkg/`; see `explorer.rs`) when the binary embeds it, and a thumbnail of
//! every evaluation image, the models' images from the same noise side by side. The folder is
//! self-contained: open `index.html` from disk or copy the folder to any static host.

pub mod carried;
pub mod explorer;
mod folder;
pub mod page;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use popalign_core::schema::report::{
    CarriedClassifier, ModelSummary, Report, SampleCell, SampleGrid, TrainingCurve,
};

use crate::error::{CliResult, input};
use crate::stages::config::{RunConfig, round_dir};
use crate::stages::images::read_manifest;
use folder::{ReportModel, RunInfo, file_name, folder_name, thumbnail, write_report_folder};

/// What a report needs from one evaluated run directory.
struct EvaluatedRun {
    dir: PathBuf,
    name: String,
    config: RunConfig,
    base: ModelSummary,
    aligned: ModelSummary,
}

impl EvaluatedRun {
    fn read(dir: &Path) -> CliResult<Self> {
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let summary = |model: &str| -> CliResult<ModelSummary> {
            let path = dir.join(format!("eval/{model}/summary.json"));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                input(format!(
                    "{}: {e} (evaluate the run first: popalign run --config {} --stage evaluate)",
                    path.display(),
                    dir.join("run.toml").display()
                ))
            })?;
            serde_json::from_str(&text).map_err(|e| input(format!("{}: {e}", path.display())))
        };
        Ok(Self {
            config: RunConfig::load(&dir.join("run.toml"))?,
            base: summary("base")?,
            aligned: summary("aligned")?,
            dir: dir.to_path_buf(),
            name,
        })
    }
}

/// Loss and implicit accuracy per step from the `metrics.jsonl` of each round, given with the steps
/// before it, so later rounds continue the count; `None` when the run has no such file. A step logged
/// twice (trained again after a resume) keeps its last record.
fn read_training(rounds: &[(PathBuf, usize)], model: &str) -> CliResult<Option<TrainingCurve>> {
    let mut by_step: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    let mut found = false;
    for (path, offset) in rounds {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        found = true;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = |what: &str| input(format!("{}:{}: {what}", path.display(), i + 1));
            let record: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let number = |key: &str| {
                record[key]
                    .as_f64()
                    .ok_or_else(|| bad(&format!("no number `{key}`")))
            };
            let step = offset + number("step")? as usize;
            by_step.insert(step, (number("loss")?, number("implicit_accuracy")?));
        }
    }
    Ok(found.then(|| TrainingCurve {
        model: model.to_string(),
        step: by_step.keys().copied().collect(),
        loss: by_step.values().map(|v| v.0).collect(),
        implicit_accuracy: by_step.values().map(|v| v.1).collect(),
    }))
}

/// Each round's `metrics.jsonl` with the steps trained before it.
fn round_metrics(run: &EvaluatedRun) -> Vec<(PathBuf, usize)> {
    let t = &run.config.train;
    (1..=t.rounds)
        .map(|round| {
            let metrics = run.dir.join(round_dir(round)).join("train/metrics.jsonl");
            (metrics, (1..round).map(|r| t.steps_of(r)).sum())
        })
        .collect()
}

/// The sample grids of every round of `run` (`train/samples/step-<n>/`), steps counted across rounds,
/// their images shrunk into `out/images/<label>/samples/step-<n>/`.
fn read_samples(run: &EvaluatedRun, label: &str, out: &Path) -> CliResult<Vec<SampleGrid>> {
    let mut grids = Vec::new();
    for (metrics, offset) in round_metrics(run) {
        let train = metrics.parent().expect("metrics.jsonl lies in train/");
        let Ok(entries) = std::fs::read_dir(train.join("samples")) else {
            continue;
        };
        let mut steps: Vec<usize> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
            .collect();
        steps.sort();
        for step in steps {
            let manifest = read_manifest(&train.join(format!("samples/step-{step}")))?;
            let folder = format!("{}/samples/step-{}", folder_name(label), offset + step);
            let cells = manifest
                .into_iter()
                .map(|entry| {
                    Ok(SampleCell {
                        thumbnail: thumbnail(
                            &train.join(&entry.file),
                            out,
                            &folder,
                            &file_name(&entry.file),
                        )?,
                        prompt: entry.job.prompt,
                        index: entry.job.index,
                    })
                })
                .collect::<CliResult<_>>()?;
            grids.push(SampleGrid {
                model: label.to_string(),
                step: offset + step,
                cells,
            });
        }
    }
    Ok(grids)
}

/// The classifiers a report carries: the folders of `--face-weights` and `--clip-weights`.
#[derive(Default)]
pub struct Carry {
    pub faces: Option<PathBuf>,
    pub clip: Option<PathBuf>,
}

impl Carry {
    fn write(&self, out: &Path) -> CliResult<Vec<CarriedClassifier>> {
        let faces = self
            .faces
            .as_deref()
            .map(|dir| carried::carry_faces(dir, out));
        let clip = self
            .clip
            .as_deref()
            .map(|dir| carried::carry_clip(dir, out));
        faces.into_iter().chain(clip).collect()
    }
}

/// Writes the report of `runs` into `out` and returns it, carrying the classifiers of `carry`.
pub fn report_for_runs(runs: &[PathBuf], out: &Path, carry: &Carry) -> CliResult<Report> {
    let runs: Vec<EvaluatedRun> = runs
        .iter()
        .map(|dir| EvaluatedRun::read(dir))
        .collect::<CliResult<_>>()?;
    let single = runs.len() == 1;
    // The same base classifications of the same image files: the runs evaluated one base model alike.
    let base_rows = |r: &EvaluatedRun| std::fs::read(r.dir.join("eval/base/attributes.csv")).ok();
    let shared_base = runs
        .windows(2)
        .all(|w| base_rows(&w[0]) == base_rows(&w[1]));
    let (mut models, mut training, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for (i, run) in runs.iter().enumerate() {
        let model = |label: String, summary: &ModelSummary| ReportModel {
            label,
            run: run.dir.clone(),
            summary: summary.clone(),
        };
        if i == 0 && shared_base {
            models.push(model("base".into(), &run.base));
        } else if !shared_base {
            models.push(model(format!("{} base", run.name), &run.base));
        }
        let aligned = if single {
            "aligned".into()
        } else {
            format!("{} aligned", run.name)
        };
        if let Some(curve) = read_training(&round_metrics(run), &aligned)? {
            training.push(curve);
        }
        samples.extend(read_samples(run, &aligned, out)?);
        models.push(model(aligned, &run.aligned));
    }
    let config = if single {
        serde_json::to_value(&runs[0].config).expect("config serialises")
    } else {
        serde_json::Value::Object(
            runs.iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        serde_json::to_value(&r.config).expect("config serialises"),
                    )
                })
                .collect(),
        )
    };
    let hashes: Vec<String> = runs.iter().map(|r| r.config.hash()).collect();
    let info = RunInfo {
        config,
        config_hash: hashes.join("+"),
        objective: "popalign".into(),
        training,
        carried: carry.write(out)?,
        samples,
    };
    write_report_folder(out, &models, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_curves_keep_the_last_record_of_a_step_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let line = |step: u32, loss: f64| {
            format!("{{\"step\":{step},\"loss\":{loss},\"implicit_accuracy\":0.5,\"lr\":0.1}}\n")
        };
        std::fs::write(&path, line(1, 0.9) + &line(2, 0.8) + &line(2, 0.7) + "\n").unwrap();
        let curve = read_training(&[(path.clone(), 0)], "r").unwrap().unwrap();
        assert_eq!((curve.step, curve.loss), (vec![1, 2], vec![0.9, 0.7]));

        // A second round's steps continue after the first's.
        let round2 = dir.path().join("round2.jsonl");
        std::fs::write(&round2, line(1, 0.6)).unwrap();
        let curve = read_training(&[(path.clone(), 0), (round2, 2)], "r")
            .unwrap()
            .unwrap();
        assert_eq!(
            (curve.step, curve.loss),
            (vec![1, 2, 3], vec![0.9, 0.7, 0.6])
        );

        std::fs::write(&path, line(1, 0.9) + "{\"step\": 2}\n").unwrap();
        let error = read_training(&[(path.clone(), 0)], "r")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("metrics.jsonl:2: no number `loss`"),
            "{error}"
        );
        assert!(
            read_training(&[(dir.path().join("absent"), 0)], "r")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn model_labels_become_safe_folder_names() {
        assert_eq!(folder_name("base"), "base");
        assert_eq!(folder_name("demo s1 aligned/../x"), "demo-s1-aligned-..-x");
        assert_eq!(folder_name(".."), "--");
    }
}
