//! Evaluation: bias metrics of attribute CSVs (`sets.rs`), quality scorers (`quality.rs`), and the
//! summary of one evaluated model of a run (`run_summary.rs`).

pub mod quality;
pub mod run_summary;
pub mod sets;
