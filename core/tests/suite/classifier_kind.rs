//! `ClassifierKind`: the name users write parses back to the same kind, serialises as that name, and is
//! what each classifier's recorded CSV name (`AttributeClassifier::name`) reads back as.

use crate::common::*;
use popalign_core::eval::classify::AttributeClassifier;
use popalign_core::eval::classify::detected::{DetectedFaces, FaceCrop, FaceDetector};
use popalign_core::eval::classify::kind::ClassifierKind;
use popalign_core::models::face::Mtcnn;
use popalign_core::models::yunet::YuNet;
use popalign_core::toy::{TOY, ToyClassifier};

#[test]
fn names_parse_back_and_serialise_as_users_write_them() {
    for kind in ClassifierKind::ALL {
        assert_eq!(kind.name().parse::<ClassifierKind>(), Ok(kind));
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.name()));
        assert_eq!(serde_json::from_str::<ClassifierKind>(&json).unwrap(), kind);
    }
    let error = "fair-face".parse::<ClassifierKind>().unwrap_err();
    assert!(
        error.contains("toy, faces, fairface, deepface, clip"),
        "{error}"
    );
    assert_eq!(ClassifierKind::of_recorded_name("retinaface-vgg"), None);
}

fn check(classifier: &dyn AttributeClassifier<B>, kind: ClassifierKind) {
    assert_eq!(classifier.kind(), kind, "{}", classifier.name());
    assert_eq!(
        ClassifierKind::of_recorded_name(&classifier.name()),
        Some(kind),
        "{}",
        classifier.name()
    );
}

#[test]
fn each_classifier_s_recorded_name_reads_back_as_its_kind() {
    check(
        &ToyClassifier::<B>::new(&TOY, &device()),
        ClassifierKind::Toy,
    );
    check(&crate::fairface::tiny(), ClassifierKind::Fairface);
    let detector = Mtcnn::load(fixtures().join("mtcnn"), &device()).unwrap();
    let faces = DetectedFaces {
        detector: FaceDetector::Mtcnn(detector),
        heads: Box::new(crate::fairface::tiny()),
        crop: Default::default(),
    };
    check(&faces, ClassifierKind::Fairface);
    check(&crate::deepface::model(), ClassifierKind::Deepface);
    let yunet = YuNet::load(&fixtures().join("yunet/yunet.safetensors"), &device()).unwrap();
    let faces = DetectedFaces {
        detector: FaceDetector::YuNet(yunet),
        heads: Box::new(crate::deepface::model()),
        crop: FaceCrop::Box,
    };
    assert_eq!(faces.name(), "yunet+deepface-vgg-face");
    check(&faces, ClassifierKind::Deepface);
    // The dlib heads (`faces`) and CLIP zero-shot are checked where their fixtures load: the CLI's
    // classify tests and `clip_model::zero_shot_loads_from_a_folder_with_its_tokenizer`.
}
