//! The CLIP zero-shot classifier a report carries (`popalign report --clip-weights DIR`), run in the
//! browser on burn-wgpu: the vision tower and the prompt embeddings `popalign` computed natively, on the
//! same decoded pixels as `popalign classify --classifier clip`.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::Wgpu;
use burn::backend::wgpu::WgpuDevice;
use popalign_core::eval::classify::Attributes;
use popalign_core::eval::classify::clip_zero_shot::{
    CARRIED_CONFIG, CARRIED_PROMPTS, CARRIED_VISION, ClipZeroShot,
};
use popalign_core::schema::report::CarriedClassifier;

use crate::carried::{file_bytes, image_tensor, load_once};

thread_local! {
    static LOADED: RefCell<Option<Rc<ClipZeroShot<Wgpu>>>> = const { RefCell::new(None) };
}

/// The classifier of `carried`, loaded on first use.
pub async fn shared(carried: &CarriedClassifier) -> Result<Rc<ClipZeroShot<Wgpu>>, String> {
    load_once(&LOADED, load(carried)).await
}

async fn load(carried: &CarriedClassifier) -> Result<ClipZeroShot<Wgpu>, String> {
    let file = |name: &str| {
        carried
            .files
            .iter()
            .find(|f| f.rsplit('/').next() == Some(name))
            .cloned()
            .ok_or_else(|| format!("the report's CLIP classifier has no {name}"))
    };
    let (config, vision, prompts) = (
        file(CARRIED_CONFIG)?,
        file(CARRIED_VISION)?,
        file(CARRIED_PROMPTS)?,
    );
    let dir = config.rsplit_once('/').map_or("", |(dir, _)| dir);
    ClipZeroShot::from_carried(
        dir,
        &file_bytes(&config).await?,
        file_bytes(&vision).await?,
        &file_bytes(&prompts).await?,
        &WgpuDevice::default(),
    )
    .map_err(|e| e.to_string())
}

/// An image file's bytes → its zero-shot probabilities.
pub async fn classify(classifier: &ClipZeroShot<Wgpu>, bytes: &[u8]) -> Result<Attributes, String> {
    let image = image_tensor(bytes)?.unsqueeze::<4>();
    classifier
        .classify_async(image)
        .await?
        .pop()
        .ok_or_else(|| "the CLIP classifier returned nothing".to_string())
}
