//! Evaluation: bias metrics of attribute CSVs (`sets.rs`), quality scorers (`quality.rs`), the paper's table
//! layout (`paper_table.rs`), and the
//! summary of one evaluated model of a run (`run_summary.rs`).

pub mod paper_table;
pub mod quality;
pub mod run_summary;
pub mod sets;
