//! `popalign prompts`, run as a user runs it: the built-in data gives three CSVs over at least 100 occupations,
//! `--check` reads prompt files back (unicode, commas in quotes, very long prompts), and bad input exits with
//! code 2 and one line on stderr naming the file.

use std::path::Path;

use assert_cmd::Command;

fn popalign() -> Command {
    Command::cargo_bin("popalign").unwrap()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Runs `popalign prompts --check FILE` on `contents` and returns (exit code, stdout, stderr).
fn check(contents: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.csv");
    std::fs::write(&file, contents).unwrap();
    let output = popalign()
        .args(["prompts", "--check"])
        .arg(&file)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn writes_three_prompt_sets_from_the_built_in_data() {
    let out = tempfile::tempdir().unwrap();
    // From another directory: the defaults are compiled in.
    popalign()
        .current_dir(out.path())
        .args(["prompts", "--out", "sets"])
        .assert()
        .success();
    let dir = out.path().join("sets");

    let (header, neutral) = read_csv(&dir.join("neutral.csv"));
    assert_eq!(header, ["prompt"]);
    assert!(neutral.len() >= 100, "{} occupations", neutral.len());
    assert!(neutral.iter().any(|r| r[0] == "a photo of an engineer"));

    let (header, specific) = read_csv(&dir.join("specific.csv"));
    assert_eq!(header, ["prompt", "base_prompt", "race", "gender"]);
    assert_eq!(specific.len(), neutral.len() * 12);
    assert_eq!(
        specific[3],
        [
            "a photo of an Asian female doctor",
            "a photo of a doctor",
            "asian",
            "female"
        ]
    );
    assert!(
        specific
            .iter()
            .any(|r| r[2] == "latino hispanic" && r[0].contains(" Latino "))
    );

    let (header, training) = read_csv(&dir.join("training.csv"));
    assert_eq!(header, ["prompt", "base_prompt", "race", "gender"]);
    let captions: std::collections::BTreeSet<&str> =
        training.iter().map(|r| r[1].as_str()).collect();
    assert!(
        captions.len() >= 200,
        "{} training captions",
        captions.len()
    );
    assert_eq!(training.len(), captions.len() * 12);
    assert!(captions.contains("a photo of a doctor, in a hospital corridor"));

    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn axes_and_limit_shape_the_sets() {
    let out = tempfile::tempdir().unwrap();
    popalign()
        .args([
            "prompts",
            "--axes",
            "age,gender",
            "--limit-occupations",
            "5",
            "--out",
        ])
        .arg(out.path())
        .assert()
        .success();
    let (header, neutral) = read_csv(&out.path().join("neutral.csv"));
    assert_eq!((header.len(), neutral.len()), (1, 5));
    let (header, specific) = read_csv(&out.path().join("specific.csv"));
    assert_eq!(header, ["prompt", "base_prompt", "age", "gender"]);
    assert_eq!(specific.len(), 5 * 6);
    assert_eq!(specific[5][0], "a photo of a very old female doctor");
    assert_eq!(specific[5][2], "very old");
}

#[test]
fn user_files_replace_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let occupations = dir.path().join("occupations.toml");
    std::fs::write(
        &occupations,
        "[[occupation]]\nname = \"astronomer\"\nscenes = [\"at a telescope\"]\n[[occupation]]\nname = \"nurse\"\nscenes = [\"on a night shift\", \"in a clinic\"]\n",
    )
    .unwrap();
    popalign()
        .args(["prompts", "--axes", "gender", "--occupations"])
        .arg(&occupations)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .success();
    let (_, training) = read_csv(&dir.path().join("out/training.csv"));
    assert_eq!(training.len(), 3 * 2);
    assert_eq!(
        training[0][0],
        "a photo of a male astronomer, at a telescope"
    );
    assert_eq!(training[0][1], "a photo of an astronomer, at a telescope");
}

#[test]
fn written_sets_read_back_with_check() {
    let out = tempfile::tempdir().unwrap();
    popalign()
        .args(["prompts", "--limit-occupations", "10", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let output = popalign()
        .args(["prompts", "--check"])
        .arg(out.path().join("specific.csv"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("120 prompts, 10 base prompts, attributes: gender, race"),
        "{stdout}"
    );
}

#[test]
fn check_accepts_unicode_commas_quotes_and_long_prompts() {
    let long = format!(
        "a photo of a doctor{}",
        ", in a very long corridor".repeat(80)
    );
    assert!(long.len() >= 2000);
    let contents = format!(
        "Prompt\n\"café owner, Zürich – 東京の医者\"\n\"a \"\"quoted\"\" nurse, at night\"\n{long:?}\nplain prompt\n"
    );
    let (code, stdout, stderr) = check(&contents);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("4 prompts, 4 base prompts, attributes: none"),
        "{stdout}"
    );
}

#[test]
fn check_reads_attribute_columns() {
    let (code, stdout, stderr) = check(
        "prompt,base_prompt,race,gender\n\"a photo of an Asian male doctor\",\"a photo of a doctor\",asian,male\n\"a photo of a Black female doctor\",\"a photo of a doctor\",black,female\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("2 prompts, 1 base prompts, attributes: gender, race"),
        "{stdout}"
    );
}

/// Bad prompt files: exit code 2 and one line on stderr with the file (and line where there is one).
fn assert_refused(contents: &str, expected: &str) {
    let (code, _, stderr) = check(contents);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("prompts.csv"), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected `{expected}` in: {stderr}"
    );
}

#[test]
fn bad_prompt_files_exit_with_code_2() {
    assert_refused("", "the file is empty");
    assert_refused("\n  \n", "the file is empty");
    assert_refused("prompt\n", "prompts.csv:1: a header but no prompts");
    assert_refused(
        "caption,seed\na doctor,1\n",
        "prompts.csv:1: no `prompt` column (found: caption, seed)",
    );
    assert_refused(
        "prompt,race\na doctor,white\na nurse\n",
        "prompts.csv:3: malformed row: 1 fields where the header has 2",
    );
    assert_refused(
        "prompt,race\na doctor,white\n\"  \",asian\n",
        "prompts.csv:3: empty prompt",
    );
}

#[test]
fn bad_inputs_to_prompts_exit_with_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let attributes = dir.path().join("attributes.toml");
    std::fs::write(&attributes, "[[axis]]\nname = \"race\"\nvalues = []\n").unwrap();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec!["--attributes".into(), attributes.clone().into()],
            "attributes.toml: axis `race` has no values",
        ),
        (
            vec!["--axes".into(), "race,ethnicity".into()],
            "--axes: unknown axis `ethnicity`",
        ),
        (
            vec!["--limit-occupations".into(), "0".into()],
            "--limit-occupations must be at least 1",
        ),
        (
            vec!["--templates".into(), dir.path().join("missing.toml").into()],
            "missing.toml: cannot read the templates file",
        ),
    ];
    for (extra, expected) in cases {
        let output = popalign()
            .args(["prompts", "--out"])
            .arg(dir.path().join("out"))
            .args(&extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected `{expected}` in: {stderr}"
        );
    }
    assert!(
        !dir.path().join("out").exists(),
        "nothing is written on bad input"
    );
}
