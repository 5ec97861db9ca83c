//! The toy world: a miniature of the real problem that runs on a laptop CPU in minutes (docs/design.md §7).
//!
//! 16×16 pictures of one figure on an occupation's background. The figure's shape plays the role of
//! gender (2 values) and its colour the role of race (6 values); prompts use real words, so the real
//! CLIP tokenizer applies: `"a photo of a nurse"`, `"a photo of a red tall nurse"`. The training data
//! for the base model is biased the way web data is: neutral prompts come out mostly `wide` or `tall`
//! depending on the occupation, and mostly `red`.

pub mod classifier;
pub mod render;
pub mod world;

pub use classifier::ToyClassifier;
pub use world::{Figure, TOY};
