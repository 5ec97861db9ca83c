//! Sampling: the schedulers, the text-to-image pipeline with guidance, and bf16 mixed precision.

pub mod pipeline;
pub mod precision;
pub mod schedulers;
