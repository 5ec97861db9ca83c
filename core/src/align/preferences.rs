//! Population preferences: which generated images are preferred to which, for one neutral prompt.
//!
//! **Official** (`3_generate_preferences.py`): for each of `iterations` draws, pick a base prompt uniformly,
//! draw `set_size` images with replacement from its diverse population (identity-specific prompts) and
//! `set_size` from its neutral population; the set with more distinct identities on some axis (races or
//! genders, ties to the diverse set) is preferred; members are paired index by index, captioned with the
//! neutral prompt. **Balanced** (our variant): the preferred set is drawn round-robin over the identities
//! (attribute combinations) present in the diverse population, so every set is as balanced as its size
//! allows, and the check is unnecessary. Images without a face never enter a population.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One classified image of a population.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Path of the image, relative to the run directory.
    pub file: String,
    /// Predicted label per axis (`race`, `gender`).
    pub identity: BTreeMap<String, String>,
}

/// The two populations of one base (neutral) prompt.
#[derive(Debug, Clone)]
pub struct Populations {
    pub caption: String,
    pub diverse: Vec<Member>,
    pub neutral: Vec<Member>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Construction {
    Official,
    Balanced,
}

/// One line of `preferences.jsonl`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PreferenceRecord {
    pub caption: String,
    pub preferred: String,
    pub dispreferred: String,
    pub population: PopulationFiles,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PopulationFiles {
    pub preferred: Vec<String>,
    pub dispreferred: Vec<String>,
}

/// Builds `iterations × set_size` preference pairs; deterministic in `seed`.
pub fn build(
    populations: &[Populations],
    construction: Construction,
    iterations: usize,
    set_size: usize,
    axes: &[&str],
    seed: u64,
) -> Result<Vec<PreferenceRecord>, String> {
    let usable: Vec<&Populations> = populations
        .iter()
        .filter(|p| !p.diverse.is_empty() && !p.neutral.is_empty())
        .collect();
    if usable.is_empty() {
        return Err("no base prompt has both a diverse and a neutral population with faces".into());
    }
    if set_size == 0 {
        return Err("the set size must be positive".into());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut records = Vec::with_capacity(iterations * set_size);
    for _ in 0..iterations {
        let populations = usable[rng.random_range(0..usable.len())];
        let neutral = draw(&populations.neutral, set_size, &mut rng);
        let diverse = match construction {
            Construction::Official => draw(&populations.diverse, set_size, &mut rng),
            Construction::Balanced => draw_balanced(&populations.diverse, set_size, &mut rng),
        };
        let diverse_wins = axes
            .iter()
            .any(|axis| distinct(&diverse, axis) >= distinct(&neutral, axis));
        let (preferred, dispreferred) = if diverse_wins {
            (diverse, neutral)
        } else {
            (neutral, diverse)
        };
        let files = |set: &[&Member]| set.iter().map(|m| m.file.clone()).collect::<Vec<_>>();
        let population = PopulationFiles {
            preferred: files(&preferred),
            dispreferred: files(&dispreferred),
        };
        for (w, l) in preferred.iter().zip(&dispreferred) {
            records.push(PreferenceRecord {
                caption: populations.caption.clone(),
                preferred: w.file.clone(),
                dispreferred: l.file.clone(),
                population: population.clone(),
            });
        }
    }
    Ok(records)
}

fn draw<'a>(members: &'a [Member], n: usize, rng: &mut ChaCha8Rng) -> Vec<&'a Member> {
    (0..n)
        .map(|_| &members[rng.random_range(0..members.len())])
        .collect()
}

/// Round-robin over identities in a random order, a random member of each.
fn draw_balanced<'a>(members: &'a [Member], n: usize, rng: &mut ChaCha8Rng) -> Vec<&'a Member> {
    let mut by_identity: BTreeMap<Vec<(&String, &String)>, Vec<&Member>> = BTreeMap::new();
    for member in members {
        by_identity
            .entry(member.identity.iter().collect())
            .or_default()
            .push(member);
    }
    let mut groups: Vec<Vec<&Member>> = by_identity.into_values().collect();
    for i in (1..groups.len()).rev() {
        groups.swap(i, rng.random_range(0..=i));
    }
    (0..n)
        .map(|i| {
            let group = &groups[i % groups.len()];
            group[rng.random_range(0..group.len())]
        })
        .collect()
}

fn distinct(set: &[&Member], axis: &str) -> usize {
    let mut labels: Vec<&str> = set
        .iter()
        .filter_map(|m| m.identity.get(axis).map(String::as_str))
        .collect();
    labels.sort_unstable();
    labels.dedup();
    labels.len()
}
