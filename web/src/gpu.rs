//! WebGPU through burn-wgpu: the probe that initialises the device once, and the helpers it needs.

use burn::backend::Wgpu;
use burn::prelude::*;
use wasm_bindgen::prelude::*;

use crate::probe::check_probe_value;

pub fn js_err(context: &str, err: JsValue) -> String {
    let detail = err
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| format!("{err:?}"));
    format!("{context}: {detail}")
}

fn js_get(target: &JsValue, key: &str) -> Result<JsValue, String> {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).map_err(|e| js_err(key, e))
}

/// Asks the browser for a WebGPU adapter through `navigator.gpu`. burn-wgpu panics when there is no adapter
/// (and a panic aborts a wasm module), so this runs first and turns "no WebGPU" into a message.
async fn request_adapter_info() -> Result<String, String> {
    let navigator: JsValue = gloo::utils::window().navigator().into();
    let gpu = js_get(&navigator, "gpu")?;
    if gpu.is_undefined() || gpu.is_null() {
        return Err(
            "navigator.gpu is missing (this browser has no WebGPU, it is disabled, \
                    or the page is not a secure context)"
                .to_string(),
        );
    }
    let request: js_sys::Function = js_get(&gpu, "requestAdapter")?
        .dyn_into()
        .map_err(|_| "navigator.gpu.requestAdapter is not a function".to_string())?;
    let promise: js_sys::Promise = request
        .call0(&gpu)
        .map_err(|e| js_err("requestAdapter()", e))?
        .dyn_into()
        .map_err(|_| "requestAdapter() did not return a promise".to_string())?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| js_err("requestAdapter()", e))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("requestAdapter() found no adapter".to_string());
    }
    // `adapter.info` (GPUAdapterInfo) is absent in older browsers; it is only used for display.
    let info = js_get(&adapter, "info").unwrap_or(JsValue::UNDEFINED);
    let field = |key: &str| {
        if info.is_undefined() {
            String::new()
        } else {
            js_get(&info, key)
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        }
    };
    let parts: Vec<String> = [field("vendor"), field("architecture")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    Ok(parts.join(" "))
}

/// Probes WebGPU: adapter request, asynchronous burn-wgpu init, one tiny kernel read back asynchronously
/// (the synchronous `into_data` blocks and cannot work on wasm).
pub async fn probe_webgpu() -> Result<String, String> {
    use burn::backend::Wgpu;
    use burn::backend::wgpu::{WgpuDevice, graphics::AutoGraphicsApi, init_setup_async};
    use burn::tensor::Tensor;

    let adapter = request_adapter_info().await?;
    let device = WgpuDevice::default();
    init_setup_async::<AutoGraphicsApi>(&device, Default::default()).await;
    let x = Tensor::<Wgpu, 1>::from_floats([1.0, 2.0, 3.0, 4.0], &device);
    let sum = (x.clone() * x).sum();
    let data = sum
        .into_data_async()
        .await
        .map_err(|e| format!("burn-wgpu readback failed: {e:?}"))?;
    let values: Vec<f32> = data
        .to_vec()
        .map_err(|e| format!("burn-wgpu returned unexpected data: {e:?}"))?;
    check_probe_value(&values)?;
    Ok(if adapter.is_empty() {
        "burn-wgpu".to_string()
    } else {
        format!("burn-wgpu on {adapter}")
    })
}

pub(crate) async fn read_back<const D: usize>(t: Tensor<Wgpu, D>) -> Result<TensorData, String> {
    t.into_data_async()
        .await
        .map_err(|e| format!("WebGPU readback failed: {e:?}"))
}
