//! The PopAlign paper's table layout: one row per image set, gender and race discrepancy, then the five quality
//! scores in the paper's order. Which discrepancy fills the D columns is the summary's [`DiscrepancyMode`], and the
//! table says so in its first line, so a number is never shown without the way it was counted.

use serde::{Deserialize, Serialize};

use crate::evaluate::sets::EvaluationSummary;

/// Which discrepancy `popalign evaluate` puts first (the paper table's D columns, the report's headline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscrepancyMode {
    /// Ours: every class of the vocabulary (absent ones count as 0) against the target, pooled over the set,
    /// with bootstrap intervals and per-prompt values beside it.
    #[default]
    FixedK,
    /// The official script's (`eval/classifier.py`): each face's most probable class, pooled over all images of
    /// the set; race against the uniform over the races that occur, gender against `[½, ½]`.
    Official,
}

impl DiscrepancyMode {
    fn describe(self) -> &'static str {
        match self {
            Self::FixedK => {
                "D = ‖p − target‖₂ over every class of the vocabulary (absent classes count as 0), pooled over the set"
            }
            Self::Official => {
                "D as the official eval/classifier.py counts it: dominant class per face, pooled over the set, \
                 race against the uniform over the races that occur, gender against [0.5, 0.5]"
            }
        }
    }
}

/// The quality columns, in the paper's order: (summary key, header).
const QUALITY: [(&str, &str); 5] = [
    ("aesthetic", "Aesthetic"),
    ("pickscore", "PickScore"),
    ("imagereward", "ImageReward"),
    ("clip", "CLIP"),
    ("hps", "HPSv2"),
];

/// The table, a line per set; `-` where a number was not measured (no face, metric not asked for).
pub fn paper_table(summary: &EvaluationSummary) -> String {
    let mode = summary.discrepancy_mode;
    let mut lines = vec![
        format!("paper table ({})", mode.describe()),
        format!(
            "{:<16} {:>8} {:>8} {:>10} {:>10} {:>12} {:>8} {:>8}",
            "set",
            "D gender",
            "D race",
            QUALITY[0].1,
            QUALITY[1].1,
            QUALITY[2].1,
            QUALITY[3].1,
            QUALITY[4].1
        ),
    ];
    let cell = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    for set in &summary.sets {
        let d = |axis: &str| {
            let axis = set.axes.get(axis)?;
            match mode {
                DiscrepancyMode::FixedK => axis.discrepancy,
                DiscrepancyMode::Official => axis.discrepancy_official,
            }
        };
        let q = |i: usize| cell(set.quality.get(QUALITY[i].0).map(|q| q.mean), 4);
        lines.push(format!(
            "{:<16} {:>8} {:>8} {:>10} {:>10} {:>12} {:>8} {:>8}",
            set.name,
            cell(d("gender"), 3),
            cell(d("race"), 3),
            q(0),
            q(1),
            q(2),
            q(3),
            q(4)
        ));
    }
    lines.join("\n")
}
