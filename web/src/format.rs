//! How numbers and report lookups are shown; pure, so tested natively.

use popalign_core::schema::report::Report;

/// Three decimals, or an en dash where the report has no value.
pub fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

pub fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or_else(String::new, |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"))
}

pub fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// The report's prompts in order of first appearance (what `#/prompt/N` indexes).
pub fn prompts(report: &Report) -> Vec<String> {
    let mut seen = Vec::<String>::new();
    for slot in &report.images {
        if !seen.contains(&slot.prompt) {
            seen.push(slot.prompt.clone());
        }
    }
    seen
}

/// The axes of the report, in the first model's order.
pub fn axes(report: &Report) -> Vec<String> {
    report
        .models
        .first()
        .map(|m| m.axes.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(Some(0.3204077)), "0.320");
        assert_eq!(number(None), "–");
        assert_eq!(interval(Some([0.25, 0.392])), "[0.250, 0.392]");
        assert_eq!(interval(None), "");
        assert_eq!(percent(0.2734375), "27.3%");
    }
}
