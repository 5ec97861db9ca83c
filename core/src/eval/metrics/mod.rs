//! Evaluation metrics computed from classifier outputs and quality scores (docs/design.md §6). Pure Rust, no tensors, no I/O:
//! the same code runs in the CLI and in the browser build.

pub mod bias;
pub mod quality;

pub use bias::{
    AxisSummary, BiasOptions, Counting, IdentityAccuracy, KlDivergence, Observation,
    PromptDiscrepancy, bootstrap_ci_images, bootstrap_ci_prompts, discrepancy_l2,
    discrepancy_official, distribution, identity_accuracy, intersectional_classes,
    intersectional_observations, intersectional_target, kl_divergence, per_prompt_discrepancy,
    percentile_interval, pooled_counts, summarize_axis, total_variation, uniform_target,
};
