//! BLIP (Li et al. 2022) as ImageReward uses it: the ViT image tower and the BERT text encoder that
//! cross-attends to the image. Both are laid out as ImageReward's checkpoint (`blip.visual_encoder.*`,
//! `blip.text_encoder.*`); the contrastive projections and the decoder are not needed for the score.

pub mod bert;
pub mod config;
pub mod tokenizer;
pub mod vit;
