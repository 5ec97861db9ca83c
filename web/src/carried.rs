//! What the classifiers a report carries (`popalign report --face-weights`, `--clip-weights`) share in the
//! browser: their files' bytes (fetched over http, loaded from `<file>.js` from disk), loading once per
//! page, and the dropped image decoded as `popalign classify` decodes it.

use std::cell::RefCell;
use std::rc::Rc;
use std::thread::LocalKey;

use base64::Engine;
use burn::backend::Wgpu;
use burn::backend::wgpu::WgpuDevice;
use burn::prelude::*;
use popalign_core::eval::classify::decode_unit_rgb;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::fetch;
use crate::gpu::js_err;

/// The classifier in `slot`, loaded by `load` on first use and kept for the page's lifetime (the weights
/// are megabytes).
pub async fn load_once<T: 'static>(
    slot: &'static LocalKey<RefCell<Option<Rc<T>>>>,
    load: impl Future<Output = Result<T, String>>,
) -> Result<Rc<T>, String> {
    if let Some(loaded) = slot.with_borrow(Clone::clone) {
        return Ok(loaded);
    }
    let loaded = Rc::new(load.await?);
    slot.with_borrow_mut(|s| *s = Some(loaded.clone()));
    Ok(loaded)
}

/// An image file's bytes → `[3, H, W]` in [0, 1] on the WebGPU device, downscaled as the CLI does.
pub fn image_tensor(bytes: &[u8]) -> Result<Tensor<Wgpu, 3>, String> {
    let (planes, w, h) =
        decode_unit_rgb(bytes).map_err(|e| format!("not a readable image: {e}"))?;
    let device = WgpuDevice::default();
    Ok(Tensor::<Wgpu, 1>::from_floats(planes.as_slice(), &device).reshape([3, h, w]))
}

/// A carried file's bytes: fetched over http; opened from disk, loaded from its `<file>.js`.
pub async fn file_bytes(file: &str) -> Result<Vec<u8>, String> {
    if !fetch::from_disk() {
        return fetch::bytes(file).await;
    }
    load_script(&format!("{file}.js")).await?;
    let window = gloo::utils::window();
    let table =
        js_sys::Reflect::get(&window, &"POPALIGN_WEIGHTS".into()).map_err(|e| js_err(file, e))?;
    let encoded = js_sys::Reflect::get(&table, &file.into())
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| format!("{file}.js did not define the bytes of {file}"))?;
    // Free the base64 text once decoded.
    let _ = js_sys::Reflect::delete_property(table.unchecked_ref::<js_sys::Object>(), &file.into());
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("{file}.js: {e}"))
}

/// Adds `<script src=src>` to the page and waits until it has run.
async fn load_script(src: &str) -> Result<(), String> {
    let document = gloo::utils::document();
    let script: web_sys::HtmlScriptElement = document
        .create_element("script")
        .map_err(|e| js_err(src, e))?
        .dyn_into()
        .map_err(|_| format!("{src}: not a script element"))?;
    let done = js_sys::Promise::new(&mut |resolve, reject| {
        script.set_onload(Some(&resolve));
        script.set_onerror(Some(&reject));
    });
    script.set_src(src);
    document
        .body()
        .ok_or("the page has no body")?
        .append_child(&script)
        .map_err(|e| js_err(src, e))?;
    JsFuture::from(done)
        .await
        .map_err(|_| format!("{src}: the script could not be loaded"))?;
    Ok(())
}
