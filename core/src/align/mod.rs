//! Alignment: the training objectives, population preference construction, and the prompt sets.

pub mod objectives;
pub mod preferences;
pub mod prompts;
