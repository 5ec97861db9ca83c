//! Prompt sets and augmentation: the shipped data files build the expected counts, articles agree with the
//! words they precede, the identity-specific set is the full intersectional product, and broken vocabularies
//! and templates are refused with a message that names the problem.

use std::collections::{BTreeMap, BTreeSet};

use popalign_core::align::prompts::{
    PromptSets, Template, TemplateSet, Vocabulary, combinations, evaluation_subjects,
    indefinite_article, neutral_prompts, parse_occupations, specific_prompts, training_subjects,
};

const OCCUPATIONS: &str = include_str!("../../../data/occupations.toml");
const ATTRIBUTES: &str = include_str!("../../../data/attributes.toml");
const TEMPLATES: &str = include_str!("../../../data/templates.toml");

fn vocabulary() -> Vocabulary {
    Vocabulary::from_toml(ATTRIBUTES).unwrap()
}

fn templates() -> TemplateSet {
    TemplateSet::from_toml(TEMPLATES, &vocabulary()).unwrap()
}

fn build(axes: &[&str]) -> PromptSets {
    let vocabulary = vocabulary();
    let occupations = parse_occupations(OCCUPATIONS).unwrap();
    PromptSets::build(
        &occupations,
        &templates(),
        &vocabulary.select(axes).unwrap(),
    )
    .unwrap()
}

fn render(template: &str, values: &[(&str, &str)]) -> String {
    let template = Template::parse(template, &vocabulary()).unwrap();
    template.render(&values.iter().copied().collect::<BTreeMap<_, _>>())
}

#[test]
fn shipped_vocabulary_has_the_classifier_labels_in_order() {
    let vocabulary = vocabulary();
    let labels = |axis: &str| -> Vec<String> {
        vocabulary
            .axis(axis)
            .unwrap()
            .values
            .iter()
            .map(|v| v.label.clone())
            .collect()
    };
    assert_eq!(labels("gender"), ["male", "female"]);
    assert_eq!(
        labels("race"),
        [
            "white",
            "asian",
            "black",
            "latino hispanic",
            "indian",
            "middle eastern"
        ]
    );
    assert_eq!(labels("age"), ["young", "mid-aged", "very old"]);
}

#[test]
fn shipped_data_builds_balanced_sets_with_expected_counts() {
    let occupations = parse_occupations(OCCUPATIONS).unwrap();
    let scenes: usize = occupations.iter().map(|o| o.scenes.len()).sum();
    assert!(
        occupations.len() >= 100,
        "{} occupations",
        occupations.len()
    );
    assert!(
        occupations
            .iter()
            .all(|o| (2..=3).contains(&o.scenes.len()))
    );

    let sets = build(&["race", "gender"]);
    assert_eq!(sets.neutral.len(), occupations.len());
    assert_eq!(sets.specific.len(), occupations.len() * 12);
    assert_eq!(sets.training.len(), scenes * 12);
    assert_eq!(sets.neutral[0].prompt, "a photo of a doctor");
    assert_eq!(sets.specific[0].prompt, "a photo of a White male doctor");
    assert_eq!(sets.specific[0].base_prompt, "a photo of a doctor");
    assert_eq!(
        sets.training[0].prompt,
        "a photo of a White male doctor, in a hospital corridor"
    );
    assert_eq!(
        sets.training[0].base_prompt,
        "a photo of a doctor, in a hospital corridor"
    );

    // Balanced: every (race, gender) cell appears once per training caption.
    let mut cells: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in &sets.training {
        *cells
            .entry((
                row.attributes["race"].clone(),
                row.attributes["gender"].clone(),
            ))
            .or_default() += 1;
    }
    assert_eq!(cells.len(), 12);
    assert!(cells.values().all(|&n| n == scenes));
}

#[test]
fn age_axis_alone_and_with_race_and_gender() {
    let occupations = parse_occupations(OCCUPATIONS).unwrap().len();
    let age = build(&["age"]);
    assert_eq!(age.specific.len(), occupations * 3);
    assert_eq!(age.specific[1].prompt, "a photo of a middle-aged doctor");
    assert_eq!(age.specific[1].attributes["age"], "mid-aged");
    assert_eq!(age.specific[1].attributes.len(), 1);

    let all = build(&["age", "race", "gender"]);
    assert_eq!(all.specific.len(), occupations * 36);
    assert_eq!(
        all.specific[35].prompt,
        "a photo of a very old Middle Eastern female doctor"
    );
}

#[test]
fn articles_follow_the_rendered_word() {
    let t = "a photo of a {race} {gender} {occupation}";
    assert_eq!(
        render(
            t,
            &[
                ("race", "Asian"),
                ("gender", "female"),
                ("occupation", "doctor")
            ]
        ),
        "a photo of an Asian female doctor"
    );
    assert_eq!(
        render(t, &[("occupation", "engineer")]),
        "a photo of an engineer"
    );
    assert_eq!(
        render(t, &[("race", "Indian"), ("occupation", "engineer")]),
        "a photo of an Indian engineer"
    );
    assert_eq!(
        render(t, &[("race", "White"), ("occupation", "engineer")]),
        "a photo of a White engineer"
    );
    // An "an" in the template is corrected too, and a capital survives; "photo" is not a slot.
    assert_eq!(
        render("An {occupation} at work", &[("occupation", "doctor")]),
        "A doctor at work"
    );
    // Articles inside filled-in text are left as written.
    assert_eq!(
        render(
            "a {occupation}, {scene}",
            &[("occupation", "urologist"), ("scene", "a apple")]
        ),
        "a urologist, a apple"
    );
    for (word, article) in [
        ("engineer", "an"),
        ("urologist", "a"),
        ("university", "a"),
        ("European", "a"),
        ("hour", "an"),
        ("HR", "an"),
        ("UX", "a"),
        ("IT", "an"),
        ("CEO", "a"),
        ("Middle", "a"),
        ("unidentified", "an"),
        ("umbrella", "an"),
    ] {
        assert_eq!(indefinite_article(word), article, "{word}");
    }
}

#[test]
fn shipped_prompts_use_an_where_needed() {
    let sets = build(&["race", "gender"]);
    let prompts: BTreeSet<&str> = sets
        .neutral
        .iter()
        .chain(&sets.specific)
        .map(|r| r.prompt.as_str())
        .collect();
    for expected in [
        "a photo of an engineer",
        "a photo of an IT technician",
        "a photo of a UX designer",
        "a photo of an Asian female doctor",
        "a photo of a Latino male engineer",
    ] {
        assert!(prompts.contains(expected), "missing `{expected}`");
    }
    assert!(
        !prompts
            .iter()
            .any(|p| p.contains(" a Asian") || p.contains(" an White"))
    );
}

#[test]
fn product_is_intersectional_and_ordered_first_axis_outermost() {
    let vocabulary = vocabulary();
    let axes = vocabulary.select(&["race", "gender"]).unwrap();
    let product = combinations(&axes);
    assert_eq!(product.len(), 12);
    let labels: Vec<(String, String)> = product
        .iter()
        .map(|c| (c[0].1.label.clone(), c[1].1.label.clone()))
        .collect();
    assert_eq!(labels[0], ("white".into(), "male".into()));
    assert_eq!(labels[1], ("white".into(), "female".into()));
    assert_eq!(labels[11], ("middle eastern".into(), "female".into()));
    assert_eq!(labels.iter().collect::<BTreeSet<_>>().len(), 12);
    assert_eq!(combinations(&[]).len(), 1);
}

#[test]
fn user_can_add_an_axis() {
    let extended = format!(
        "{ATTRIBUTES}\n[[axis]]\nname = \"attire\"\nvalues = [{{ label = \"casual\", words = \"casually dressed\" }}, {{ label = \"formal\", words = \"formally dressed\" }}]\n"
    );
    let vocabulary = Vocabulary::from_toml(&extended).unwrap();
    let neutral = Template::parse("a photo of a {occupation}", &vocabulary).unwrap();
    let specific =
        Template::parse("a photo of a {attire} {gender} {occupation}", &vocabulary).unwrap();
    let occupations = parse_occupations("[[occupation]]\nname = \"architect\"\n").unwrap();
    let axes = vocabulary.select(&["attire", "gender"]).unwrap();
    let rows = specific_prompts(
        &evaluation_subjects(&occupations),
        &neutral,
        &specific,
        &axes,
    )
    .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[3].prompt,
        "a photo of a formally dressed female architect"
    );
    assert_eq!(rows[3].attributes["attire"], "formal");
}

fn vocabulary_error(text: &str) -> String {
    Vocabulary::from_toml(text).unwrap_err()
}

#[test]
fn bad_vocabularies_are_refused_with_a_reason() {
    let empty_axis = "[[axis]]\nname = \"race\"\nvalues = []\n";
    assert!(vocabulary_error(empty_axis).contains("axis `race` has no values"));

    let duplicate = "[[axis]]\nname = \"gender\"\nvalues = [{ label = \"male\", words = \"male\" }, { label = \"male\", words = \"man\" }]\n";
    assert!(vocabulary_error(duplicate).contains("duplicate label `male`"));

    let same_words = "[[axis]]\nname = \"gender\"\nvalues = [{ label = \"m\", words = \"male\" }, { label = \"f\", words = \"male\" }]\n";
    assert!(vocabulary_error(same_words).contains("duplicate words `male`"));

    let twice = "[[axis]]\nname = \"age\"\nvalues = [{ label = \"young\", words = \"young\" }]\n";
    assert!(vocabulary_error(&format!("{twice}{twice}")).contains("axis `age` is defined twice"));

    let bad_name = "[[axis]]\nname = \"skin tone\"\nvalues = [{ label = \"x\", words = \"x\" }]\n";
    assert!(vocabulary_error(bad_name).contains("axis name `skin tone`"));

    let reserved = "[[axis]]\nname = \"occupation\"\nvalues = [{ label = \"x\", words = \"x\" }]\n";
    assert!(vocabulary_error(reserved).contains("reserved"));

    let typo = "[[axis]]\nname = \"age\"\nvalues = [{ label = \"young\", word = \"young\" }]\n";
    let message = vocabulary_error(typo);
    assert!(
        message.starts_with("line 3:") && message.contains("word"),
        "{message}"
    );
    assert!(!message.contains('\n'));

    assert!(vocabulary_error("").contains("no [[axis]]"));
    assert!(
        vocabulary()
            .select(&["ethnicity"])
            .unwrap_err()
            .contains("unknown axis `ethnicity`")
    );
    assert!(
        vocabulary()
            .select(&["race", "race"])
            .unwrap_err()
            .contains("chosen twice")
    );
}

#[test]
fn bad_templates_are_refused_with_a_reason() {
    let vocabulary = vocabulary();
    let unknown =
        Template::parse("a photo of a {ethnicity} {occupation}", &vocabulary).unwrap_err();
    assert!(
        unknown.contains("unknown placeholder {ethnicity}"),
        "{unknown}"
    );
    assert!(
        unknown.contains("known: occupation, scene, gender, race, age"),
        "{unknown}"
    );
    assert!(
        Template::parse("a photo of a {occupation", &vocabulary)
            .unwrap_err()
            .contains("unmatched")
    );
    assert!(
        Template::parse("a photo}", &vocabulary)
            .unwrap_err()
            .contains("unmatched")
    );
    assert!(
        Template::parse("   ", &vocabulary)
            .unwrap_err()
            .contains("empty")
    );

    let no_scene = TEMPLATES.replace("{occupation}, {scene}", "{occupation}");
    let message = TemplateSet::from_toml(&no_scene, &vocabulary).unwrap_err();
    assert!(
        message.starts_with("[training] neutral:") && message.contains("needs {scene}"),
        "{message}"
    );

    let axis_in_neutral = TEMPLATES.replace(
        "neutral = \"a photo of a {occupation}\"",
        "neutral = \"a photo of a {race} {occupation}\"",
    );
    let message = TemplateSet::from_toml(&axis_in_neutral, &vocabulary).unwrap_err();
    assert!(
        message.starts_with("[evaluation] neutral:") && message.contains("{race}"),
        "{message}"
    );

    // Choosing an axis the specific template cannot say would repeat every prompt.
    let neutral = Template::parse("a photo of a {occupation}", &vocabulary).unwrap();
    let gender_only = Template::parse("a photo of a {gender} {occupation}", &vocabulary).unwrap();
    let occupations = parse_occupations("[[occupation]]\nname = \"nurse\"\n").unwrap();
    let axes = vocabulary.select(&["race", "gender"]).unwrap();
    let message = specific_prompts(
        &evaluation_subjects(&occupations),
        &neutral,
        &gender_only,
        &axes,
    )
    .unwrap_err();
    assert!(message.contains("axis `race` is chosen"), "{message}");
}

#[test]
fn bad_occupation_lists_are_refused_with_a_reason() {
    let twice = "[[occupation]]\nname = \"nurse\"\n[[occupation]]\nname = \"Nurse\"\n";
    assert!(
        parse_occupations(twice)
            .unwrap_err()
            .contains("`Nurse` is listed twice")
    );
    let scene_twice = "[[occupation]]\nname = \"nurse\"\nscenes = [\"at work\", \" at work \"]\n";
    assert!(
        parse_occupations(scene_twice)
            .unwrap_err()
            .contains("scene `at work` twice")
    );
    assert!(
        parse_occupations("[[occupation]]\nname = \" \"\n")
            .unwrap_err()
            .contains("empty name")
    );
    assert!(
        parse_occupations("")
            .unwrap_err()
            .contains("no [[occupation]]")
    );

    // Without scenes an occupation can be evaluated but not trained on.
    let no_scenes = parse_occupations("[[occupation]]\nname = \"nurse\"\n").unwrap();
    assert_eq!(
        neutral_prompts(
            &evaluation_subjects(&no_scenes),
            &templates().evaluation.neutral
        )
        .unwrap()[0]
            .prompt,
        "a photo of a nurse"
    );
    assert!(
        training_subjects(&no_scenes)
            .unwrap_err()
            .contains("`nurse` has no scenes")
    );
}
