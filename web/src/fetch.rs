//! Reads files of the report folder with `fetch`, relative to the page.

use popalign_core::schema::report::Report;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::gpu::js_err;

/// Whether the page was opened from disk, where the browser runs scripts from its folder but refuses
/// `fetch`.
pub fn from_disk() -> bool {
    gloo::utils::window().location().protocol().ok().as_deref() == Some("file:")
}

pub async fn bytes(url: &str) -> Result<Vec<u8>, String> {
    let window = gloo::utils::window();
    let response = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| {
        let why = js_err(url, e);
        if from_disk() {
            format!(
                "{why}. Opened from disk, this browser does not let the page read files: drop the image \
                 onto the page, or serve this folder (python3 -m http.server)."
            )
        } else {
            why
        }
    })?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| format!("{url}: fetch did not return a Response"))?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = response.array_buffer().map_err(|e| js_err(url, e))?;
    let buffer = JsFuture::from(buffer).await.map_err(|e| js_err(url, e))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// `report.json` next to the page, parsed with the schema check of `popalign_core::schema::report`. Opened from
/// disk, the page has loaded the same text from `report.js` (`window.POPALIGN_REPORT`) instead.
pub async fn report() -> Result<Report, String> {
    let embedded = js_sys::Reflect::get(&gloo::utils::window(), &"POPALIGN_REPORT".into())
        .ok()
        .and_then(|v| v.as_string());
    let text = match embedded {
        Some(text) => text,
        None => {
            let raw = bytes("report.json").await?;
            String::from_utf8(raw).map_err(|e| format!("report.json is not UTF-8: {e}"))?
        }
    };
    Report::parse(&text).map_err(|e| format!("report.json: {e}"))
}
