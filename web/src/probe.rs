//! The WebGPU probe's outcome and the check of its read-back: pure, so they build and are tested natively.

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
