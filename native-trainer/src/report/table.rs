//! The comparison table printed after a run and written beside the report.

use super::page::quality_names;
use popalign_core::eval::classify::kind::ClassifierKind;
use popalign_core::schema::report::ModelSummary;

/// The comparison table printed on stdout: one column per model.
pub fn comparison_table(models: &[ModelSummary]) -> String {
    let row = |label: &str, f: &dyn Fn(&ModelSummary) -> String| {
        let mut line = format!("{label:<36}");
        for (i, model) in models.iter().enumerate() {
            let width = model.model.chars().count().max(if i == 0 { 9 } else { 11 }) + 1;
            line.push_str(&format!("{:>width$}", f(model)));
        }
        line
    };
    let discrepancy = |axis: String| {
        move |s: &ModelSummary| {
            s.axes
                .get(&axis)
                .and_then(|a| a.discrepancy)
                .map_or("n/a".into(), |d| format!("{d:.3}"))
        }
    };
    let first = models.first();
    let axes: Vec<String> = first.map_or(Vec::new(), |m| m.axes.keys().cloned().collect());
    let toy = first.is_some_and(|m| {
        ClassifierKind::of_recorded_name(&m.classifier) == Some(ClassifierKind::Toy)
    });
    std::iter::once(row("neutral prompts", &|s| s.model.clone()))
        .chain(axes.into_iter().map(|axis| {
            let label = format!("{axis} discrepancy ‖p − uniform‖₂");
            row(&label, &discrepancy(axis))
        }))
        .chain(
            quality_names(models)
                .into_iter()
                .enumerate()
                .map(|(i, name)| {
                    // The toy world's occupation accuracy is a share, printed in percent.
                    let label = match name.as_str() {
                        "occupation_accuracy" => "occupation accuracy (%)".to_string(),
                        _ => format!("{name} (mean)"),
                    };
                    row(&label, &move |s: &ModelSummary| {
                        let q = s.qualities().nth(i);
                        q.map_or("n/a".into(), |q| format!("{:.1}", q.mean))
                    })
                }),
        )
        .chain([row(
            if toy {
                "figure found (%)"
            } else {
                "face found (%)"
            },
            &|s| {
                s.axes
                    .values()
                    .next()
                    .and_then(|a| a.face_found_rate)
                    .map_or("n/a".into(), |r| format!("{:.1}", 100.0 * r))
            },
        )])
        .collect::<Vec<_>>()
        .join("\n")
}
