//! Population preferences: the official construction's rules and the balanced variant.

use std::collections::BTreeMap;

use popalign_core::align::preferences::{Construction, Member, Populations, build};

fn member(file: &str, race: &str, gender: &str) -> Member {
    Member {
        file: file.into(),
        identity: BTreeMap::from([
            ("race".into(), race.into()),
            ("gender".into(), gender.into()),
        ]),
    }
}

fn doctor() -> Populations {
    let races = ["white", "asian", "black"];
    Populations {
        caption: "a photo of a doctor".into(),
        diverse: (0..12)
            .map(|i| member(&format!("d{i}"), races[i % 3], ["male", "female"][i / 6]))
            .collect(),
        neutral: (0..10)
            .map(|i| member(&format!("n{i}"), "white", "male"))
            .collect(),
    }
}

#[test]
fn official_pairs_diverse_over_neutral_index_by_index() {
    let records = build(
        &[doctor()],
        Construction::Official,
        20,
        5,
        &["race", "gender"],
        7,
    )
    .unwrap();
    assert_eq!(records.len(), 100);
    for chunk in records.chunks(5) {
        for (i, r) in chunk.iter().enumerate() {
            assert_eq!(r.caption, "a photo of a doctor");
            assert!(
                r.preferred.starts_with('d') && r.dispreferred.starts_with('n'),
                "{r:?}"
            );
            assert_eq!(r.population.preferred[i], r.preferred);
            assert_eq!(r.population.dispreferred[i], r.dispreferred);
        }
    }
    let again = build(
        &[doctor()],
        Construction::Official,
        20,
        5,
        &["race", "gender"],
        7,
    )
    .unwrap();
    assert_eq!(records, again, "deterministic in the seed");
}

#[test]
fn the_official_check_swaps_when_the_neutral_set_is_more_varied() {
    let mut swapped = doctor();
    std::mem::swap(&mut swapped.diverse, &mut swapped.neutral);
    let records = build(
        &[swapped],
        Construction::Official,
        40,
        5,
        &["race", "gender"],
        1,
    )
    .unwrap();
    // The "diverse" side is now all white men (files n*). It wins only where the other set shows a
    // single race and a single gender too; otherwise the varied set (files d*) is preferred.
    let distinct = |files: &[String], pick: fn(usize) -> usize| {
        let mut v: Vec<usize> = files
            .iter()
            .filter(|f| f.starts_with('d'))
            .map(|f| pick(f[1..].parse().unwrap()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.len().max(1)
    };
    let mut swaps = 0;
    for chunk in records.chunks(5) {
        let population = &chunk[0].population;
        let varied = if population.preferred[0].starts_with('d') {
            &population.preferred
        } else {
            &population.dispreferred
        };
        let one_identity = distinct(varied, |i| i % 3) == 1 || distinct(varied, |i| i / 6) == 1;
        let varied_preferred = chunk[0].preferred.starts_with('d');
        assert_eq!(varied_preferred, !one_identity, "{population:?}");
        swaps += usize::from(varied_preferred);
    }
    assert!(swaps > 30, "{swaps} of 40 sets swapped");
}

#[test]
fn balanced_sets_cover_distinct_identities() {
    let records = build(
        &[doctor()],
        Construction::Balanced,
        30,
        6,
        &["race", "gender"],
        3,
    )
    .unwrap();
    let identity = |file: &str| {
        let i: usize = file[1..].parse().unwrap();
        (i % 3, i / 6)
    };
    for chunk in records.chunks(6) {
        let mut seen: Vec<_> = chunk.iter().map(|r| identity(&r.preferred)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            6,
            "6 identities exist, a set of 6 shows each once"
        );
    }
}

#[test]
fn empty_populations_are_an_error() {
    let mut empty = doctor();
    empty.neutral.clear();
    let error = build(&[empty], Construction::Official, 1, 5, &["race"], 0).unwrap_err();
    assert!(error.contains("no base prompt"), "{error}");
}
