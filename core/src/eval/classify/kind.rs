//! Which attribute classifier: one type for the user's choice (`--classifier`, `[classify] classifier`),
//! for what an attribute CSV says produced its rows, and for the classifiers a report carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassifierKind {
    /// The toy world's palette classifier (shape as gender, colour as race).
    Toy,
    /// MTCNN face detection, then the CC0 dlib gender (and age) networks on the largest face.
    Faces,
    /// MTCNN face detection, then FairFace's ResNet-34 (gender, race, age) on the largest face.
    Fairface,
    /// MTCNN face detection, then DeepFace's VGG-Face gender and race models on the largest face's box, as
    /// PopAlign's official evaluation classifies (it detects with YuNet).
    Deepface,
    /// CLIP zero-shot on the whole image ("a photo of a man" / "a photo of a woman", "a photo of a
    /// {race} person"); every image counts as showing a person.
    Clip,
}

impl ClassifierKind {
    pub const ALL: [Self; 5] = [
        Self::Toy,
        Self::Faces,
        Self::Fairface,
        Self::Deepface,
        Self::Clip,
    ];

    /// The name users write, and that serde reads and writes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Toy => "toy",
            Self::Faces => "faces",
            Self::Fairface => "fairface",
            Self::Deepface => "deepface",
            Self::Clip => "clip",
        }
    }

    /// The kind of a classifier from the name it records in an attribute CSV's `classifier` column
    /// ([`super::AttributeClassifier::name`]: `toy-palette`, `mtcnn+dlib-gender-v1`,
    /// `mtcnn+fairface-res34-7race`, `mtcnn+deepface-vgg-face`, `yunet+deepface-vgg-face`,
    /// `clip-zero-shot:<model>`); `None` for a name no classifier of ours writes (rows from another tool).
    pub fn of_recorded_name(name: &str) -> Option<Self> {
        let heads = ["mtcnn+", "yunet+"]
            .iter()
            .find_map(|detector| name.strip_prefix(detector))
            .unwrap_or(name);
        if name == "toy-palette" {
            Some(Self::Toy)
        } else if heads.starts_with("fairface") {
            Some(Self::Fairface)
        } else if heads.starts_with("deepface") {
            Some(Self::Deepface)
        } else if heads.starts_with("dlib") {
            Some(Self::Faces)
        } else if name.starts_with("clip-zero-shot") {
            Some(Self::Clip)
        } else {
            None
        }
    }
}

impl fmt::Display for ClassifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ClassifierKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown classifier `{name}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}
