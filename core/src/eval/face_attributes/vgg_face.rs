//! VGG-Face's trunk (Parkhi, Vedaldi & Zisserman, BMVC 2015) as DeepFace builds it for its gender and race models:
//! VGG-16's thirteen 3×3 convolutions (each after a 1-pixel zero padding, ReLU) in five blocks closed by 2×2 max
//! pools, then `fc6` (a 7×7 convolution over the 7×7 map) and `fc7` (1×1), both with ReLU. DeepFace cuts the
//! network there, after `fc7`'s dropout (`layers[-4]`), so `fc8`, the 2622-identity classifier, is not built.
//!
//! ```text
//! [N, 3, 224, 224] → block1 (64, 64) → pool → block2 (128, 128) → pool → block3 (256 ×3) → pool
//!                  → block4 (512 ×3) → pool → block5 (512 ×3) → pool → [N, 512, 7, 7]
//!                  → fc6 7×7 (4096) → fc7 1×1 (4096) → [N, 4096, 1, 1]
//! ```
//!
//! Field names are deepface's PyTorch port's (`conv1_1` … `conv5_3`, `fc6`, `fc7`), which follow the original
//! matconvnet names; `tools/convert_deepface.py` writes the Keras files under them. Dropout is inference-off.

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;

use std::path::Path;

use crate::io::load::{self, LoadError};
use crate::nn::{conv, conv2d};

/// Convolutions per block, as in VGG-16.
pub const BLOCK_DEPTHS: [usize; 5] = [2, 2, 3, 3, 3];

/// Widths of the trunk: VGG-Face's are [`VggFaceConfig::vgg_face`]; the tests use narrower ones.
#[derive(Debug, Clone, PartialEq)]
pub struct VggFaceConfig {
    /// Channels of the five blocks' convolutions.
    pub widths: [usize; 5],
    /// Channels of `fc6` and `fc7`.
    pub fc: usize,
}

impl VggFaceConfig {
    pub fn vgg_face() -> Self {
        Self {
            widths: [64, 128, 256, 512, 512],
            fc: 4096,
        }
    }

    /// The widths of the trunk a converted file holds under `prefix` (`backbone.`): each block's first
    /// convolution and `fc6`, read from the file's header. Any tensor then still missing or mis-shaped is
    /// named by the load itself.
    pub fn of_file(file: &Path, prefix: &str) -> Result<Self, LoadError> {
        let shapes = load::tensor_shapes(file)?;
        let out_channels = |name: &str| {
            let key = format!("{prefix}{name}.weight");
            match shapes.get(&key).map(Vec::as_slice) {
                Some([out, ..]) => Ok(*out),
                _ => Err(LoadError::Safetensors {
                    path: file.to_path_buf(),
                    message: format!("no 4-d tensor `{key}`: not a converted VGG-Face model"),
                }),
            }
        };
        let mut widths = [0; 5];
        for (block, width) in widths.iter_mut().enumerate() {
            *width = out_channels(&format!("conv{}_1", block + 1))?;
        }
        Ok(Self {
            widths,
            fc: out_channels("fc6")?,
        })
    }
}

#[derive(Module, Debug)]
pub struct VggFaceTrunk<B: Backend> {
    pub conv1_1: Conv2d<B>,
    pub conv1_2: Conv2d<B>,
    pub conv2_1: Conv2d<B>,
    pub conv2_2: Conv2d<B>,
    pub conv3_1: Conv2d<B>,
    pub conv3_2: Conv2d<B>,
    pub conv3_3: Conv2d<B>,
    pub conv4_1: Conv2d<B>,
    pub conv4_2: Conv2d<B>,
    pub conv4_3: Conv2d<B>,
    pub conv5_1: Conv2d<B>,
    pub conv5_2: Conv2d<B>,
    pub conv5_3: Conv2d<B>,
    pub fc6: Conv2d<B>,
    pub fc7: Conv2d<B>,
}

impl<B: Backend> VggFaceTrunk<B> {
    pub fn new(config: &VggFaceConfig, device: &B::Device) -> Self {
        let mut c_in = 3;
        let mut convs = Vec::new();
        for (width, depth) in config.widths.iter().zip(BLOCK_DEPTHS) {
            for _ in 0..depth {
                convs.push(conv2d(c_in, *width, 3, 1, 1, device));
                c_in = *width;
            }
        }
        let mut convs = convs.into_iter();
        let mut next = || convs.next().expect("thirteen convolutions");
        Self {
            conv1_1: next(),
            conv1_2: next(),
            conv2_1: next(),
            conv2_2: next(),
            conv3_1: next(),
            conv3_2: next(),
            conv3_3: next(),
            conv4_1: next(),
            conv4_2: next(),
            conv4_3: next(),
            conv5_1: next(),
            conv5_2: next(),
            conv5_3: next(),
            fc6: conv2d(c_in, config.fc, 7, 1, 0, device),
            fc7: conv2d(config.fc, config.fc, 1, 1, 0, device),
        }
    }

    fn blocks(&self) -> [Vec<&Conv2d<B>>; 5] {
        [
            vec![&self.conv1_1, &self.conv1_2],
            vec![&self.conv2_1, &self.conv2_2],
            vec![&self.conv3_1, &self.conv3_2, &self.conv3_3],
            vec![&self.conv4_1, &self.conv4_2, &self.conv4_3],
            vec![&self.conv5_1, &self.conv5_2, &self.conv5_3],
        ]
    }

    /// `[N, 3, 224, 224]` (DeepFace's input: BGR in [0, 1]) → the `fc7` features `[N, fc, 1, 1]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = x;
        for block in self.blocks() {
            for c in block {
                x = relu(conv::apply(c, x));
            }
            x = max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        let x = relu(conv::apply(&self.fc6, x));
        relu(conv::apply(&self.fc7, x))
    }
}
