//! Evaluation: attribute classifiers and quality scorers, and the bias and quality metrics.

pub mod classify;
pub mod face_attributes;
pub mod metrics;
