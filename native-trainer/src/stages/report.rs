//! The report folder (`report/` of a run, or `popalign report --runs A B --out DIR`): `report.json`
//! (schema in `popalign_core::schema::report`), `index.html` (a static page, see `page.rs`), the browser explorer
//! (`explorer.html`, `style.css`, `pkg/`; see `explorer.rs`) when the binary embeds it, and a thumbnail of
//! every evaluation image, the models' images from the same noise side by side. The folder is
//! self-contained: open `index.html` from disk or copy the folder to any static host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use popalign_core::eval::classify::AxisSpec;
use popalign_core::schema::report::{
    CarriedClassifier, ImageSlot, ModelSummary, Report, SCHEMA_VERSION, SampleCell, SampleGrid,
    SlotImage, TrainingCurve,
};

use super::classify::{AttributeRow, read_rows};
use super::config::{RunConfig, round_dir};
use super::images::read_manifest;
use super::page::quality_names;
use crate::artifacts::write_atomic;
use crate::error::runtime;
use crate::error::{CliResult, input};

/// Longest side of a thumbnail; smaller images are copied as they are.
const THUMBNAIL_SIDE: u32 = 256;
/// JPEG quality of a thumbnail. At 75 a 256-px thumbnail of a 1024² photograph averages about 14 KiB
/// (bench/report_size.sh), so a 10,000-image report with its explorer stays under 200 MB; at 85 it
/// was 19 KiB and the same report about 230 MB.
const THUMBNAIL_QUALITY: u8 = 75;

#[derive(clap::Args)]
pub struct Args {
    /// Evaluated run directories (each with `run.toml` and `eval/{base,aligned}/`). Runs that share the
    /// base model's evaluation show it once; the first run's images give the rows.
    #[arg(long, num_args = 1.., required = true)]
    runs: Vec<PathBuf>,
    /// The report folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Carry MTCNN and the dlib gender (and age) networks from this folder (the `--weights` of `popalign
    /// classify --classifier faces`), so the explorer classifies photos dropped onto it in the browser.
    #[arg(long, value_name = "DIR")]
    face_weights: Option<PathBuf>,
    /// Carry the CLIP zero-shot classifier of this `CLIPModel` folder (the `--weights` of `popalign
    /// classify --classifier clip`): its vision tower and the prompt embeddings, computed here.
    #[arg(long, value_name = "DIR")]
    clip_weights: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let carry = Carry {
        faces: args.face_weights,
        clip: args.clip_weights,
    };
    let report = report_for_runs(&args.runs, &args.out, &carry)?;
    println!("{}", report.table);
    eprintln!("report written to {}", args.out.display());
    Ok(())
}

/// One model column of a report: its label, the run it comes from, and its evaluation summary
/// (`summary.model` names the folder `eval/<model>/` of `run`).
struct ReportModel {
    label: String,
    run: PathBuf,
    summary: ModelSummary,
}

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
            .map(|dir| super::carried::carry_faces(dir, out));
        let clip = self
            .clip
            .as_deref()
            .map(|dir| super::carried::carry_clip(dir, out));
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

struct RunInfo {
    config: serde_json::Value,
    config_hash: String,
    objective: String,
    training: Vec<TrainingCurve>,
    carried: Vec<CarriedClassifier>,
    samples: Vec<SampleGrid>,
}

/// The comparison table printed on stdout: one column per model.
pub fn comparison_table(models: &[ModelSummary]) -> String {
    let row = |label: &str, f: &dyn Fn(&ModelSummary) -> String| {
        let mut line = format!("{label:<36}");
        for (i, model) in models.iter().enumerate() {
            let width = model.model.chars().count().max(if i == 0 { 9 } else { 11 }) + 1;
            line.push_str(&format!("{:>width$}", f(model)));
        }
        line
    };
    let discrepancy = |axis: String| {
        move |s: &ModelSummary| {
            s.axes
                .get(&axis)
                .and_then(|a| a.discrepancy)
                .map_or("n/a".into(), |d| format!("{d:.3}"))
        }
    };
    let first = models.first();
    let axes: Vec<String> = first.map_or(Vec::new(), |m| m.axes.keys().cloned().collect());
    let toy = first.is_some_and(|m| m.classifier == "toy-palette");
    std::iter::once(row("neutral prompts", &|s| s.model.clone()))
        .chain(axes.into_iter().map(|axis| {
            let label = format!("{axis} discrepancy ‖p − uniform‖₂");
            row(&label, &discrepancy(axis))
        }))
        .chain(
            quality_names(models)
                .into_iter()
                .enumerate()
                .map(|(i, name)| {
                    // The toy world's occupation accuracy is a share, printed in percent.
                    let label = match name.as_str() {
                        "occupation_accuracy" => "occupation accuracy (%)".to_string(),
                        _ => format!("{name} (mean)"),
                    };
                    row(&label, &move |s: &ModelSummary| {
                        let q = s.qualities().nth(i);
                        q.map_or("n/a".into(), |q| format!("{:.1}", q.mean))
                    })
                }),
        )
        .chain([row(
            if toy {
                "figure found (%)"
            } else {
                "face found (%)"
            },
            &|s| {
                s.axes
                    .values()
                    .next()
                    .and_then(|a| a.face_found_rate)
                    .map_or("n/a".into(), |r| format!("{:.1}", 100.0 * r))
            },
        )])
        .collect::<Vec<_>>()
        .join("\n")
}

/// The axes as the first model's summary lists them.
fn axes_of(summary: &ModelSummary) -> Vec<AxisSpec> {
    summary
        .axes
        .iter()
        .map(|(name, axis)| AxisSpec {
            name: name.clone(),
            classes: axis.classes.clone(),
        })
        .collect()
}

/// Writes `out/` from each model's evaluation (`<run>/eval/<model>/{attributes.csv,images}`), in that
/// order (the first model's images give the order of the slots; images match by file name).
fn write_report_folder(out: &Path, models: &[ReportModel], info: RunInfo) -> CliResult<Report> {
    std::fs::create_dir_all(out).map_err(|e| runtime(out, e))?;
    let axes = axes_of(&models[0].summary);
    let rows: Vec<Vec<AttributeRow>> = models
        .iter()
        .map(|m| {
            read_rows(
                &m.run
                    .join(format!("eval/{}/attributes.csv", m.summary.model)),
                &axes,
            )
        })
        .collect::<CliResult<_>>()?;
    // Same run: the models' images share file names (same prompt, same noise). Runs with other seeds
    // name theirs differently; those pair up by prompt and position within the prompt instead.
    let keyed: Vec<(
        BTreeMap<String, &AttributeRow>,
        BTreeMap<(String, usize), &AttributeRow>,
    )> = rows
        .iter()
        .map(|rows| {
            let by_name = rows.iter().map(|r| (file_name(&r.file), r)).collect();
            (by_name, by_position(rows).into_iter().collect())
        })
        .collect();
    let mut images = Vec::new();
    for (position, row) in by_position(&rows[0]) {
        let name = file_name(&row.file);
        let mut slot_models = Vec::new();
        for (model, (by_name, by_pos)) in models.iter().zip(&keyed) {
            let Some(row) = by_name.get(&name).or_else(|| by_pos.get(&position)) else {
                slot_models.push(SlotImage {
                    thumbnail: None,
                    face_found: false,
                    predicted: BTreeMap::new(),
                    probabilities: BTreeMap::new(),
                });
                continue;
            };
            let folder = folder_name(&model.label);
            let thumbnail = thumbnail(
                &model.run.join(&row.file),
                out,
                &folder,
                &file_name(&row.file),
            )?;
            let found = || axes.iter().zip(&row.axes).filter(|_| row.face_found);
            slot_models.push(SlotImage {
                thumbnail,
                face_found: row.face_found,
                predicted: found()
                    .map(|(axis, (label, _, _))| (axis.name.clone(), label.clone()))
                    .collect(),
                probabilities: found()
                    .map(|(axis, (_, _, probs))| (axis.name.clone(), probs.clone()))
                    .collect(),
            });
        }
        images.push(ImageSlot {
            prompt: row.prompt.clone(),
            name,
            models: slot_models,
        });
    }
    let summaries: Vec<ModelSummary> = models
        .iter()
        .map(|m| ModelSummary {
            model: m.label.clone(),
            ..m.summary.clone()
        })
        .collect();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        popalign_version: popalign_core::VERSION.to_string(),
        config_hash: info.config_hash,
        config: info.config,
        objective: info.objective,
        table: comparison_table(&summaries),
        models: summaries,
        images,
        training: info.training,
        carried_classifiers: info.carried,
        samples: info.samples,
    };
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    write_atomic(&out.join("report.json"), json.as_bytes())?;
    // The same text as a classic script, which the explorer reads when opened from disk (file://), where
    // browsers let a page run scripts from its folder but not fetch files. A JSON string is a JS literal.
    let script = format!(
        "window.POPALIGN_REPORT = {};\n",
        serde_json::to_string(&json).expect("a string serialises")
    );
    write_atomic(&out.join("report.js"), script.as_bytes())?;
    let explorer = super::explorer::FILES;
    if explorer.is_empty() {
        eprintln!(
            "note: {} has the static page (index.html) but no explorer.html: this popalign was built without \
             the browser bundle; run `bash tools/build-web.sh`, build again and re-run to add it",
            out.display()
        );
    }
    for (path, contents) in explorer {
        let path = out.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| runtime(parent, e))?;
        }
        write_atomic(&path, contents)?;
    }
    write_atomic(
        &out.join("index.html"),
        super::page::render(&report, !explorer.is_empty()).as_bytes(),
    )?;
    Ok(report)
}

/// Rows keyed by prompt and their position among that prompt's rows, in file order.
fn by_position(rows: &[AttributeRow]) -> Vec<((String, usize), &AttributeRow)> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    rows.iter()
        .map(|r| {
            let k = seen.entry(&r.prompt).or_default();
            *k += 1;
            ((r.prompt.clone(), *k - 1), r)
        })
        .collect()
}

/// A model's label as a folder name under `images/`: letters, digits, `.`, `_` and `-` kept, the rest `-`
/// (and never `.` or `..`).
fn folder_name(label: &str) -> String {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.chars().all(|c| c == '.') {
        name.replace('.', "-")
    } else {
        name
    }
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Copies (or shrinks to a JPEG of `THUMBNAIL_SIDE`) one image into `out/images/<model>/`; returns its
/// path relative to `out`, or `None` when the image cannot be read (the page then shows its name).
fn thumbnail(source: &Path, out: &Path, model: &str, name: &str) -> CliResult<Option<String>> {
    // Read once: the bytes are decoded to check the image and, when it is small, copied as they are.
    let Ok(bytes) = std::fs::read(source) else {
        return Ok(None);
    };
    let Ok(image) = image::load_from_memory(&bytes) else {
        return Ok(None);
    };
    let dir = out.join("images").join(model);
    std::fs::create_dir_all(&dir).map_err(|e| runtime(&dir, e))?;
    let (relative, bytes) = if image.width().max(image.height()) <= THUMBNAIL_SIDE {
        (format!("images/{model}/{name}"), bytes)
    } else {
        let small = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, THUMBNAIL_QUALITY)
            .encode_image(&small)
            .map_err(|e| runtime(source, e))?;
        let stem = Path::new(name).with_extension("jpg");
        (format!("images/{model}/{}", stem.display()), bytes)
    };
    write_atomic(&out.join(&relative), &bytes)?;
    Ok(Some(relative))
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
