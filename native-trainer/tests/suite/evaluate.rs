//! `popalign evaluate --attributes CSV`: bias metrics of a hand-made attribute CSV against values computed by
//! hand, unreadable rows left out, targets and intersections from the command line, and bad input refused with
//! exit code 2.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

const HEADER: &str = "file,prompt,base_prompt,face_found,gender,gender_p,gender_probs,race,race_p,race_probs,classifier,error";
const CLASSIFIER: &str = "mtcnn+fairface-res34-7race";

/// One row: `gender` and `race` as class indices (None: no face), or an unreadable file.
fn row(file: &str, prompt: &str, faces: Option<(usize, usize)>, error: &str) -> String {
    let genders = ["male", "female"];
    let races = [
        "white",
        "asian",
        "black",
        "latino hispanic",
        "indian",
        "middle eastern",
    ];
    let one_hot = |k: usize, n: usize| {
        (0..n)
            .map(|i| if i == k { "0.900000" } else { "0.020000" })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match faces {
        Some((g, r)) => format!(
            "{file},{prompt},,true,{},0.9,{},{},0.9,{},{CLASSIFIER},",
            genders[g],
            if g == 0 { "0.9 0.1" } else { "0.1 0.9" },
            races[r],
            one_hot(r, 6)
        ),
        None => format!("{file},{prompt},,false,,,,,,,{CLASSIFIER},{error}"),
    }
}

/// Two prompts: doctor (3 male white, 1 female black), nurse (1 no face); plus one unreadable file.
fn sample_csv(dir: &Path) -> std::path::PathBuf {
    let rows = [
        row("a.png", "doctor", Some((0, 0)), ""),
        row("b.png", "doctor", Some((0, 0)), ""),
        row("c.png", "doctor", Some((0, 0)), ""),
        row("d.png", "doctor", Some((1, 2)), ""),
        row("e.png", "nurse", None, ""),
        row("f.jpg", "nurse", None, "truncated JPEG"),
    ];
    let path = dir.join("aligned.csv");
    std::fs::write(&path, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
    path
}

fn evaluate(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("popalign")
        .unwrap()
        .arg("evaluate")
        .args(args)
        .output()
        .unwrap()
}

/// `evaluate --attributes CSV --out OUT EXTRA...`, which must succeed; its output and the summary it wrote.
fn evaluate_ok(csv: &Path, out: &Path, extra: &[&str]) -> (std::process::Output, Value) {
    let mut args = vec![
        "--attributes",
        csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = evaluate(&args);
    assert!(output.status.success(), "{output:?}");
    let summary = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    (output, summary)
}

fn close(value: &Value, want: f64) -> bool {
    (value.as_f64().unwrap() - want).abs() < 1e-9
}

/// `--official` against the official PopAlign evaluation's own arithmetic (pandas and numpy, transcribed in
/// `tools/fixtures/deepface/make_official_discrepancy.py`) on the same faces: every class present, one gender and
/// three races (numpy's broadcast and the shrunken K), and one race only. Both evaluate pooled over the set.
#[test]
fn official_mode_matches_the_official_script_number_for_number() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/official-discrepancy");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("expected.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = ["balanced", "one_gender_three_races", "one_race"];
    let csvs: Vec<String> = cases
        .iter()
        .map(|c| {
            fixtures
                .join(format!("{c}.csv"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let out = dir.path().join("summary.json");
    let mut args = vec!["--attributes"];
    args.extend(csvs.iter().map(String::as_str));
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "--official",
        "--bootstrap",
        "0",
    ]);
    let output = evaluate(&args);
    assert!(output.status.success(), "{output:?}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(summary["discrepancy_mode"], "official");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("paper table (D as the official eval/classifier.py counts it"),
        "{stdout}"
    );
    for (case, set) in cases.iter().zip(summary["sets"].as_array().unwrap()) {
        let want = &expected[case];
        for axis in ["gender", "race"] {
            let ours = &set["axes"][axis];
            assert_eq!(ours["n_faces"], want["faces"], "{case} {axis}");
            // Both sides sum the same counts in f64; measured equal to the last bit or within 1e-16.
            assert!(
                close(&ours["discrepancy_official"], want[axis].as_f64().unwrap()),
                "{case} {axis}: ours {} official {}",
                ours["discrepancy_official"],
                want[axis]
            );
        }
        let row = stdout.lines().rev().find(|l| l.starts_with(case)).unwrap();
        let printed = format!("{:.3}", want["race"].as_f64().unwrap());
        assert!(row.contains(&printed), "{row} lacks {printed}");
    }
}

#[test]
fn summary_matches_hand_computed_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let csv = sample_csv(dir.path());
    let out = dir.path().join("out/summary.json");
    let (output, summary) = evaluate_ok(
        &csv,
        &out,
        &["--intersection", "race,gender", "--bootstrap", "200"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 unreadable image(s) left out"),
        "{stdout}"
    );
    assert!(out.with_extension("txt").exists());
    let set = &summary["sets"][0];
    assert_eq!(set["name"], "aligned");
    assert_eq!(set["classifier"], CLASSIFIER);
    assert_eq!(set["n_rows"], 6);
    assert_eq!(set["n_unreadable"], 1);

    // Gender: 3 male, 1 female over 4 faces of 5 readable images. D = ‖(0.75, 0.25) − (0.5, 0.5)‖₂.
    let gender = &set["axes"]["gender"];
    assert_eq!(gender["n_images"], 5);
    assert_eq!(gender["n_faces"], 4);
    assert!(close(&gender["face_found_rate"], 0.8));
    assert!(close(&gender["discrepancy"], (2.0f64 * 0.25 * 0.25).sqrt()));
    // TV = ½ (0.25 + 0.25); KL = 0.75 ln 1.5 + 0.25 ln 0.5.
    assert!(close(&gender["tv"], 0.25));
    assert!(close(
        &gender["kl"]["finite"],
        0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln()
    ));
    // Race: white 3/4, black 1/4, four classes absent (K stays 6); the official variant drops them.
    let race = &set["axes"]["race"];
    let d: f64 = [0.75, 0.0, 0.25, 0.0, 0.0, 0.0]
        .iter()
        .map(|p: &f64| (p - 1.0 / 6.0).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(close(&race["discrepancy"], d));
    assert!(close(
        &race["discrepancy_official"],
        (2.0f64 * 0.25 * 0.25).sqrt()
    ));
    // The nurse prompt has no face: counted, no discrepancy.
    let nurse = &race["per_prompt"][1];
    assert_eq!(nurse["prompt"], "nurse");
    assert_eq!(nurse["n_faces"], 0);
    assert!(nurse["discrepancy"].is_null());
    // Intersection: 12 classes, uniform target 1/12; white|male 3/4, black|female 1/4.
    let joint = &set["axes"]["race|gender"];
    assert_eq!(joint["classes"].as_array().unwrap().len(), 12);
    assert_eq!(joint["classes"][0], "white|male");
    let d: f64 = (0..12)
        .map(|k| {
            let p = match k {
                0 => 0.75,
                5 => 0.25,
                _ => 0.0,
            };
            (p - 1.0 / 12.0f64).powi(2)
        })
        .sum::<f64>()
        .sqrt();
    assert!(close(&joint["discrepancy"], d));
    let [lo, hi] = [&gender["ci_images"][0], &gender["ci_images"][1]].map(|v| v.as_f64().unwrap());
    assert!(lo <= hi);
}

#[test]
fn a_target_file_moves_the_reference_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let csv = sample_csv(dir.path());
    let target = dir.path().join("target.toml");
    std::fs::write(&target, "[gender]\nmale = 0.75\nfemale = 0.25\n").unwrap();
    let out = dir.path().join("summary.json");
    let (_, summary) = evaluate_ok(
        &csv,
        &out,
        &["--target", target.to_str().unwrap(), "--bootstrap", "0"],
    );
    let gender = &summary["sets"][0]["axes"]["gender"];
    assert!(close(&gender["discrepancy"], 0.0));
    assert!(gender["ci_images"].is_null());
    // Race keeps the uniform target.
    assert!(close(
        &summary["sets"][0]["axes"]["race"]["target"][0],
        1.0 / 6.0
    ));

    std::fs::write(&target, "[gender]\nmale = 0.5\nnonbinary = 0.5\n").unwrap();
    let output = evaluate(&[
        "--attributes",
        csv.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("nonbinary"));
}

#[test]
fn bad_attribute_files_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let refuse = |name: &str, text: &str, needle: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let output = evaluate(&["--attributes", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
        assert!(
            stderr.contains(needle) && stderr.contains(name),
            "{name}: {stderr}"
        );
    };
    refuse(
        "prompts.csv",
        "prompt,base_prompt\ndoctor,doctor\n",
        "not an attribute CSV",
    );
    // Three gender probabilities for two classes.
    let wrong = row("a.png", "doctor", Some((0, 0)), "").replace("0.9 0.1", "0.8 0.1 0.1");
    refuse("wrong.csv", &format!("{HEADER}\n{wrong}\n"), "a.png");
    let other =
        row("b.png", "doctor", Some((0, 0)), "").replace(CLASSIFIER, "mtcnn+dlib-age-gender-v1");
    let mixed = format!(
        "{HEADER}\n{}\n{other}\n",
        row("a.png", "doctor", Some((0, 0)), "")
    );
    refuse("mixed.csv", &mixed, "several classifiers");
    let unknown = "file,prompt,base_prompt,face_found,mood,mood_p,mood_probs,classifier,error\na.png,,,true,happy,1,1,x,\n";
    refuse("mood.csv", unknown, "--vocabulary");
    let output = evaluate(&["--attributes", "/nonexistent/attributes.csv"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn identity_accuracy_counts_prompts_that_name_a_class() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        row("a.png", "a photo of a male doctor", Some((0, 0)), ""),
        // Named female, read as male: wrong. "female" must not also count as naming "male".
        row("b.png", "a photo of a female doctor", Some((0, 0)), ""),
        row("c.png", "a photo of a Black female nurse", Some((1, 2)), ""),
        // A neutral prompt names no class and is left out.
        row("d.png", "a photo of a doctor", Some((1, 1)), ""),
        row("e.png", "a photo of a Middle Eastern male nurse", None, ""),
    ];
    let csv = dir.path().join("specific.csv");
    std::fs::write(&csv, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
    let out = dir.path().join("summary.json");
    let (output, summary) = evaluate_ok(&csv, &out, &["--bootstrap", "0"]);
    let accuracy = &summary["sets"][0]["identity_accuracy"];
    let gender = &accuracy["gender"];
    assert_eq!(gender["n_images"], 4);
    assert_eq!(gender["n_faces"], 3);
    assert_eq!(gender["n_no_face"], 1);
    assert_eq!(gender["n_correct"], 2);
    assert!(close(&gender["accuracy"], 2.0 / 3.0));
    // Race is named twice ("Black", and "Middle Eastern" as two words), once with a face, read right.
    let race = &accuracy["race"];
    assert_eq!(race["n_images"], 2);
    assert_eq!(race["n_correct"], 1);
    assert!(close(&race["accuracy"], 1.0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("identity accuracy 0.667"));
}

// ---------------------------------------------------------------------------------------------------------
// Quality metrics (`--metrics`), on the tiny random scorers of fixtures/: the CLI must score each image against
// its own prompt with the right model, exactly as the core scorers do (their parity with Python is proven in
// core/tests/suite/quality_scorers.rs), summarise per set and pair base with aligned images.

mod quality {
    use super::*;
    use burn::backend::NdArray;
    use popalign_core::eval::classify::Scorer;
    use popalign_core::eval::classify::aesthetic::AestheticScorer;
    use popalign_core::eval::classify::clip_scores::{ClipScoreKind, ClipScorer};
    use popalign_core::eval::classify::hps::HpsScorer;
    use popalign_core::eval::classify::image_reward::ImageRewardScorer;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    }

    /// Model folders as users have them: the model plus its tokenizer.
    fn models(root: &Path) -> (PathBuf, PathBuf) {
        let tokenizer = fixtures().join("tiny-sdxl/tokenizer");
        let clip = root.join("clip");
        copy_dir(&fixtures().join("clip-tiny"), &clip);
        copy_dir(&tokenizer, &clip.join("tokenizer"));
        let hps = root.join("hps");
        copy_dir(&fixtures().join("open-clip-tiny"), &hps);
        copy_dir(&tokenizer, &hps.join("tokenizer"));
        (clip, hps)
    }

    const FILES: [&str; 3] = ["a.png", "b.png", "c.png"];
    const PROMPTS: [&str; 3] = ["a photo of a doctor", "a nurse", "a portrait of a ceo"];

    /// `run/images/<set>/{a,b,c}.png` (40×48, different per set and file) and `run/attributes/<set>.csv`, whose
    /// fourth row is unreadable.
    fn image_set(run: &Path, set: &str, shade: u8) -> PathBuf {
        let dir = run.join("images").join(set);
        std::fs::create_dir_all(&dir).unwrap();
        let mut rows = Vec::new();
        for (k, (file, prompt)) in FILES.iter().zip(PROMPTS).enumerate() {
            let image = image::RgbImage::from_fn(40, 48, |x, y| {
                let v = |m: u32| ((x * m + y * (k as u32 + 3) + u32::from(shade)) % 256) as u8;
                image::Rgb([v(5), v(11), v(17)])
            });
            image.save(dir.join(file)).unwrap();
            rows.push(row(
                &format!("images/{set}/{file}"),
                prompt,
                Some((0, 0)),
                "",
            ));
        }
        rows.push(row(
            &format!("images/{set}/d.png"),
            "a nurse",
            None,
            "truncated PNG",
        ));
        let csv = run.join("attributes").join(format!("{set}.csv"));
        std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
        std::fs::write(&csv, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
        csv
    }

    fn image_reward_dir() -> PathBuf {
        fixtures().join("imagereward-tiny")
    }

    /// What the core scorers give for one set's three images, per metric.
    fn expected(run: &Path, set: &str, clip: &Path, hps: &Path) -> Vec<(String, Vec<f64>)> {
        let device = Default::default();
        let images: Vec<image::RgbImage> = FILES
            .iter()
            .map(|f| {
                image::open(run.join("images").join(set).join(f))
                    .unwrap()
                    .to_rgb8()
            })
            .collect();
        let decoded: Vec<(&[u8], usize, usize)> = images
            .iter()
            .map(|im| (im.as_raw().as_slice(), 40, 48))
            .collect();
        let prompts: Vec<String> = PROMPTS.iter().map(|p| p.to_string()).collect();
        let aesthetic = fixtures().join("aesthetic-tiny/model.safetensors");
        let scorers: Vec<(&str, Box<dyn Scorer<NdArray>>)> = vec![
            (
                "aesthetic",
                Box::new(AestheticScorer::load(&aesthetic, clip, &device).unwrap()),
            ),
            (
                "clip",
                Box::new(ClipScorer::from_dir(clip, ClipScoreKind::ClipScore, &device).unwrap()),
            ),
            ("hps", Box::new(HpsScorer::from_dir(hps, &device).unwrap())),
            (
                "imagereward",
                Box::new(ImageRewardScorer::from_dir(&image_reward_dir(), &device).unwrap()),
            ),
            (
                "pickscore",
                Box::new(ClipScorer::from_dir(clip, ClipScoreKind::PickScore, &device).unwrap()),
            ),
        ];
        scorers
            .into_iter()
            .map(|(name, s)| {
                (
                    name.to_string(),
                    s.score_rgb8(&decoded, &prompts, &device).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn metrics_score_each_image_with_its_prompt_and_pair_base_with_aligned() {
        let tmp = tempfile::tempdir().unwrap();
        let (clip, hps) = models(&tmp.path().join("models"));
        let run = tmp.path().join("run");
        let base = image_set(&run, "base", 0);
        let aligned = image_set(&run, "aligned", 90);
        let out = run.join("evaluation/summary.json"); // a folder that does not exist yet
        let (clip_s, hps_s) = (clip.to_str().unwrap(), hps.to_str().unwrap());
        let aesthetic = fixtures().join("aesthetic-tiny/model.safetensors");
        let image_reward = image_reward_dir();
        let mut args = vec![
            "--attributes",
            base.to_str().unwrap(),
            aligned.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend([
            "--metrics",
            "pickscore,hps,clip,aesthetic,imagereward",
            "--pickscore",
            clip_s,
            "--hps",
            hps_s,
            "--clip-model",
            clip_s,
            "--aesthetic",
            aesthetic.to_str().unwrap(),
            "--aesthetic-clip",
            clip_s,
            "--imagereward",
            image_reward.to_str().unwrap(),
            "--baseline",
            "base",
            "--bootstrap",
            "200",
        ]);
        let output = evaluate(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

        let mut reader = csv::Reader::from_path(run.join("evaluation/scores.csv")).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header,
            [
                "set",
                "file",
                "prompt",
                "base_prompt",
                "aesthetic",
                "clip",
                "hps",
                "imagereward",
                "pickscore"
            ]
        );
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(
            records.len(),
            8,
            "4 rows per set, the unreadable one included"
        );
        for (s, set) in ["base", "aligned"].iter().enumerate() {
            let mut base_means = Vec::new();
            for (m, (metric, want)) in expected(&run, set, &clip, &hps).iter().enumerate() {
                let got: Vec<f64> = (0..3)
                    .map(|i| records[s * 4 + i][4 + m].parse().unwrap())
                    .collect();
                assert_eq!(
                    &got, want,
                    "{set} {metric}: scores.csv against the core scorer"
                );
                assert_eq!(
                    &records[s * 4 + 3][4 + m],
                    "",
                    "an unreadable image has no score"
                );
                let q = &summary["sets"][s]["quality"][metric];
                let mean = want.iter().sum::<f64>() / 3.0;
                assert!(
                    (q["mean"].as_f64().unwrap() - mean).abs() < 1e-9,
                    "{set} {metric}: {q}"
                );
                assert_eq!(q["n"], 3);
                let [lo, hi] = [q["ci"][0].as_f64().unwrap(), q["ci"][1].as_f64().unwrap()];
                assert!(
                    lo <= mean + 1e-12 && mean <= hi + 1e-12,
                    "{set} {metric}: {q}"
                );
                base_means.push(mean);
            }
            assert_eq!(summary["sets"][s]["quality"].as_object().unwrap().len(), 5);
        }
        // aligned − base, image by image.
        let comparison = &summary["comparisons"][0];
        assert_eq!(
            (comparison["baseline"].as_str(), comparison["set"].as_str()),
            (Some("base"), Some("aligned"))
        );
        for (m, metric) in ["aesthetic", "clip", "hps", "imagereward", "pickscore"]
            .iter()
            .enumerate()
        {
            let d = &comparison["metrics"][metric];
            let want: f64 = (0..3)
                .map(|i| {
                    records[4 + i][4 + m].parse::<f64>().unwrap()
                        - records[i][4 + m].parse::<f64>().unwrap()
                })
                .sum::<f64>()
                / 3.0;
            assert_eq!(d["n_pairs"], 3, "{metric}");
            assert!(
                (d["mean_difference"].as_f64().unwrap() - want).abs() < 1e-9,
                "{metric}: {d}"
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("aligned − base: pickscore"), "{stdout}");
    }

    #[test]
    fn a_metric_without_its_model_or_an_unknown_baseline_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        let base = image_set(&run, "base", 0);
        let csv = base.to_str().unwrap();
        let output = evaluate(&["--attributes", csv, "--metrics", "hps"]);
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains("--metrics hps needs --hps DIR"));
        let output = evaluate(&["--attributes", csv, "--metrics", "sharpness"]);
        assert_eq!(output.status.code(), Some(2));
        let (clip, _) = models(&tmp.path().join("models"));
        let clip = clip.to_str().unwrap();
        let output = evaluate(&[
            "--attributes",
            csv,
            "--metrics",
            "clip",
            "--clip-model",
            clip,
            "--baseline",
            "nope",
        ]);
        assert_eq!(output.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--baseline nope: no such set (base)")
        );
    }
}
