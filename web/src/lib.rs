//! popalign-web: the browser report explorer (Leptos CSR, burn-wgpu on WebGPU).
//!
//! Built for `wasm32-unknown-unknown` and turned into `www/pkg/popalign_web.js` by `tools/build-web.sh`
//! (`wasm-bindgen --target web`). The page loads `report.json` from its own folder (schema in
//! `popalign_core::schema::report`) and shows the overview (`#/`) or one prompt (`#/prompt/N`). Everything from the
//! report is rendered as text nodes by Leptos, never as HTML. The toy classifier re-runs in the browser on
//! WebGPU, on shown images or on a dropped file; a report that carries the face classifier (MTCNN and the dlib
//! networks, `faces.rs`) runs it on dropped photos.
//!
//! Natively only the pure helpers (`format`, `probe`, `route`) build, so `cargo test --workspace` tests them
//! without compiling Leptos or burn-wgpu; the app itself is `app.rs` and the modules it declares.

// The pure helpers build on every target; the app itself (Leptos, burn-wgpu, the browser APIs) only for
// wasm32, so the native build of this crate, and its tests, need none of those dependencies.
// Natively nothing calls the formatters but their tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod format;
mod probe;
mod route;

pub use probe::{Probe, check_probe_value};
pub use route::Route;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod carried;
#[cfg(target_arch = "wasm32")]
mod charts;
#[cfg(target_arch = "wasm32")]
mod classify;
#[cfg(target_arch = "wasm32")]
mod clip;
#[cfg(target_arch = "wasm32")]
mod faces;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod gpu;
#[cfg(target_arch = "wasm32")]
mod overview;
#[cfg(target_arch = "wasm32")]
mod prompt;
