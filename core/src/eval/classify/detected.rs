//! A face classifier for whole images: MTCNN finds the faces, and attribute heads that read aligned
//! face chips (the dlib gender and age networks, FairFace, CLIP zero-shot) read the first face.
//!
//! "First" is MTCNN's order: the largest box (facenet-pytorch's `select_largest`), the convention of
//! PopAlign's evaluation, which classifies one person per image. An image without a face is reported
//! as such (`face_found = false`), never dropped. The chip is MTCNN's square crop of the box
//! (`image_size` × `image_size`, margin from the config), not a landmark alignment; or, for heads that
//! resize crops themselves as DeepFace does ([`FaceCrop::Box`]), the box's own pixels.

use burn::prelude::*;

use super::{AttributeClassifier, Attributes, AxisSpec};
use crate::models::face::Mtcnn;
use crate::models::face::extract::crop_box;

pub struct DetectedFaces<B: Backend> {
    pub detector: Mtcnn<B>,
    pub heads: Box<dyn AttributeClassifier<B>>,
    pub crop: FaceCrop,
}

/// What the heads are given of the first face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaceCrop {
    /// facenet-pytorch's `extract_face`: a square `image_size` crop with the configured margin.
    #[default]
    Standardised,
    /// The box's pixels at the image's resolution, its corners truncated to whole pixels (as DeepFace
    /// crops `img[y:y+h, x:x+w]` from its detectors' integer boxes), any aspect ratio.
    Box,
}

impl<B: Backend> DetectedFaces<B> {
    /// The first face's chip of one `[3, H, W]` image in [0, 1], as `[1, 3, S, S]` in [0, 1], or `None`
    /// without a face. Reads back asynchronously, so the browser runs it on burn-wgpu; the heads' outputs
    /// are then read back by the caller.
    pub async fn first_face_chip(
        detector: &Mtcnn<B>,
        image: Tensor<B, 3>,
    ) -> Result<Option<Tensor<B, 4>>, String> {
        // MTCNN works on 0..255 byte values; rounding undoes the /255 of `unit_rgb_planes` exactly.
        let bytes = (image * 255.0).round();
        let Some(face) = detector
            .detect_async(bytes.clone())
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        // The crop comes standardised as facenet-pytorch's `(x − 127.5) / 128`; the heads take [0, 1].
        let chip = detector.extract_async(bytes, &face).await?;
        Ok(chip.map(|chip| ((chip * 128.0 + 127.5) / 255.0).unsqueeze()))
    }

    /// The first face's box of one `[3, H, W]` image in [0, 1], as `[1, 3, h, w]`, or `None` without a face
    /// (or when the box holds no whole pixel).
    pub async fn first_face_box(
        detector: &Mtcnn<B>,
        image: Tensor<B, 3>,
    ) -> Result<Option<Tensor<B, 4>>, String> {
        let [_, height, width] = image.dims();
        let bytes = (image.clone() * 255.0).round();
        let Some(face) = detector.detect_async(bytes).await?.into_iter().next() else {
            return Ok(None);
        };
        // No margin (the output size only scales the margin, so any size will do).
        let Some([x0, y0, x1, y1]) = crop_box(face.bbox, 1, 0, width, height) else {
            return Ok(None);
        };
        Ok(Some(image.slice([0..3, y0..y1, x0..x1]).unsqueeze()))
    }

    fn first_face(&self, image: Tensor<B, 3>) -> Option<Tensor<B, 4>> {
        let chip = match self.crop {
            FaceCrop::Standardised => {
                futures_lite::future::block_on(Self::first_face_chip(&self.detector, image))
            }
            FaceCrop::Box => {
                futures_lite::future::block_on(Self::first_face_box(&self.detector, image))
            }
        };
        chip.unwrap_or_else(|e| panic!("MTCNN: {e}"))
    }
}

impl<B: Backend> AttributeClassifier<B> for DetectedFaces<B> {
    fn name(&self) -> String {
        format!("mtcnn+{}", self.heads.name())
    }

    fn kind(&self) -> super::kind::ClassifierKind {
        self.heads.kind()
    }

    fn axes(&self) -> Vec<AxisSpec> {
        self.heads.axes()
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        let n = images.dims()[0];
        (0..n)
            .map(|i| {
                let image = images.clone().slice([i..i + 1]).squeeze_dim(0);
                match self.first_face(image) {
                    Some(chip) => self.heads.classify(chip).remove(0),
                    None => Attributes {
                        face_found: false,
                        probabilities: Default::default(),
                    },
                }
            })
            .collect()
    }
}
