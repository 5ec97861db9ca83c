//! WebGPU through burn-wgpu: the probe that initialises the device once, and the helpers it needs.

use wasm_bindgen::prelude::*;

/// Outcome of the WebGPU probe.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// Still running (adapter request, burn-wgpu init, first kernel).
    Pending,
    /// burn-wgpu initialised and computed the expected value; the string describes the adapter.
    Ok(String),
    /// No usable WebGPU; the string says why.
    Unavailable(String),
}

impl Probe {
    /// The line shown to the reader.
    pub fn message(&self) -> String {
        match self {
            Probe::Pending => "WebGPU: probing…".to_string(),
            Probe::Ok(detail) if detail.is_empty() => "WebGPU: ok".to_string(),
            Probe::Ok(detail) => format!("WebGPU: ok ({detail})"),
            Probe::Unavailable(why) => format!("WebGPU not available: {why}"),
        }
    }

    /// CSS class of the status line.
    pub fn class(&self) -> &'static str {
        match self {
            Probe::Pending => "status pending",
            Probe::Ok(_) => "status ok",
            Probe::Unavailable(_) => "status error",
        }
    }

    pub fn from_result(result: Result<String, String>) -> Self {
        match result {
            Ok(detail) => Probe::Ok(detail),
            Err(why) => Probe::Unavailable(why),
        }
    }
}

/// Checks that a burn-wgpu readback of `sum(x*x)` for `x = [1, 2, 3, 4]` equals 30.
pub fn check_probe_value(values: &[f32]) -> Result<(), String> {
    match values {
        [v] if (v - 30.0).abs() < 1e-4 => Ok(()),
        other => Err(format!("burn-wgpu computed {other:?}, expected [30.0]")),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(Probe::Ok(String::new()).message(), "WebGPU: ok");
        assert_eq!(
            Probe::Ok("burn-wgpu on google swiftshader".into()).message(),
            "WebGPU: ok (burn-wgpu on google swiftshader)"
        );
        assert_eq!(
            Probe::Unavailable("requestAdapter() found no adapter".into()).message(),
            "WebGPU not available: requestAdapter() found no adapter"
        );
        assert!(
            Probe::from_result(Err("x".into()))
                .message()
                .starts_with("WebGPU not available: ")
        );
        assert_eq!(Probe::Pending.class(), "status pending");
    }

    #[test]
    fn probe_value() {
        assert!(check_probe_value(&[30.0]).is_ok());
        assert!(check_probe_value(&[29.0]).is_err());
        assert!(check_probe_value(&[]).is_err());
        assert!(check_probe_value(&[30.0, 30.0]).is_err());
    }
}
