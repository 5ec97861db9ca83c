//! `report/index.html`: the report as one static page with no script, so it opens from `file://` and from
//! any static host. Overview (discrepancy per axis with its bootstrap interval, quality, face-found rate),
//! distributions against the target as SVG bars labelled with their numbers (readable without colour),
//! then every prompt with its base and aligned images from the same noise. Everything taken from the
//! report goes through `escape`: a prompt is text, never markup.

use std::fmt::Write;

use popalign_core::eval::metrics::bias::AxisSummary;
use popalign_core::schema::report::{ImageSlot, ModelSummary, Report, SlotImage};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:.4rem}
figure{margin:0;text-align:center;font-size:.75rem}figure img{width:64px;height:64px;image-rendering:pixelated;display:block}
.slot{display:flex;flex-direction:column;gap:.2rem}.label{height:64px;line-height:64px;margin-bottom:1rem;font-weight:600}
svg text{font-size:11px;font-family:system-ui,sans-serif}pre{background:#f4f4f4;padding:.6rem;overflow:auto}";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn render(report: &Report, explorer: bool) -> String {
    let mut html = String::new();
    let names: Vec<&str> = report.models.iter().map(|m| m.model.as_str()).collect();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>popalign report</title><style>{STYLE}</style></head><body>\
         <h1>popalign report</h1><p>objective <b>{}</b> · configuration hash <code>{}</code> · \
         popalign {} · report schema {}</p>",
        escape(&report.objective),
        escape(&report.config_hash),
        escape(&report.popalign_version),
        report.schema_version
    );
    if explorer {
        html.push_str(
            "<p>Interactive explorer (filters, in-browser classification): <a href=\"explorer.html\">\
             explorer.html</a>. It opens from disk too; classifying the report's own images in the browser \
             needs the folder served over http (any static server, for example <code>python3 -m \
             http.server</code>), while an image you drop onto the page works either way.</p>",
        );
    }
    html.push_str(&overview(report, &names));
    for axis in axis_names(report) {
        html.push_str(&distributions(report, &axis));
    }
    html.push_str(
        "<h2>Images by prompt</h2><p>Each column is one starting noise; the rows are the models. \
                   Under each image: the classifier's prediction per axis, or “no face”.</p>",
    );
    let mut prompts: Vec<&str> = Vec::new();
    for slot in &report.images {
        if !prompts.contains(&slot.prompt.as_str()) {
            prompts.push(&slot.prompt);
        }
    }
    for prompt in prompts {
        let slots: Vec<&ImageSlot> = report
            .images
            .iter()
            .filter(|s| s.prompt == prompt)
            .collect();
        html.push_str(&prompt_section(report, prompt, &slots, &names));
    }
    html.push_str(&samples_section(report));
    let config = serde_json::to_string_pretty(&report.config).unwrap_or_default();
    let _ = write!(
        html,
        "<h2>Run configuration</h2><pre>{}</pre><h2>Table as printed</h2><pre>{}</pre></body></html>\n",
        escape(&config),
        escape(&report.table)
    );
    html
}

fn axis_names(report: &Report) -> Vec<String> {
    report
        .models
        .first()
        .map(|m| m.axes.keys().cloned().collect())
        .unwrap_or_default()
}

fn number(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.3}"))
}

fn discrepancy_cell(axis: &AxisSummary) -> String {
    match axis.ci_images {
        Some([lo, hi]) => format!("{} [{lo:.3}, {hi:.3}]", number(axis.discrepancy)),
        None => number(axis.discrepancy),
    }
}

fn overview(report: &Report, names: &[&str]) -> String {
    let mut html = String::from("<h2>Overview</h2><table><tr><th></th>");
    for name in names {
        let _ = write!(html, "<th>{}</th>", escape(name));
    }
    html.push_str("</tr>");
    let mut row = |label: String, cell: &dyn Fn(&ModelSummary) -> String| {
        let _ = write!(html, "<tr><td>{label}</td>");
        for model in &report.models {
            let _ = write!(html, "<td>{}</td>", escape(&cell(model)));
        }
        html.push_str("</tr>");
    };
    for axis in axis_names(report) {
        row(
            format!(
                "{} discrepancy ‖p − q‖₂ [95% CI over images]",
                escape(&axis)
            ),
            &|m| m.axes.get(&axis).map_or("n/a".into(), discrepancy_cell),
        );
        row(
            format!(
                "{} discrepancy as the official eval/classifier.py counts it",
                escape(&axis)
            ),
            &|m| number(m.axes.get(&axis).and_then(|a| a.discrepancy_official)),
        );
    }
    for (i, name) in quality_names(&report.models).iter().enumerate() {
        row(
            "quality: ".to_string() + &escape(name) + " [95% CI]",
            &|m| {
                m.qualities().nth(i).map_or("n/a".into(), |q| {
                    format!("{:.1} [{:.1}, {:.1}]", q.mean, q.ci[0], q.ci[1])
                })
            },
        );
    }
    row("face found (%)".into(), &|m| {
        m.axes
            .values()
            .next()
            .and_then(|a| a.face_found_rate)
            .map_or("n/a".into(), |r| format!("{:.1}", 100.0 * r))
    });
    html.push_str("</table>");
    html
}

/// One SVG bar chart per axis: for each class, a bar per model and a tick at the target share, each
/// bar labelled with its percentage.
fn distributions(report: &Report, axis: &str) -> String {
    let Some(first) = report.models.first().and_then(|m| m.axes.get(axis)) else {
        return String::new();
    };
    let (bar, gap, top) = (14.0, 10.0, 16.0);
    let per_class = bar * report.models.len() as f64 + gap;
    let height = top + per_class * first.classes.len() as f64;
    let mut svg = format!(
        "<h3>{} distribution</h3><svg role=\"img\" width=\"520\" height=\"{height}\" \
         aria-label=\"{} distribution per model against the target\">",
        escape(axis),
        escape(axis)
    );
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"11\">bars: share per model (in order: {}); line: target</text>",
        escape(
            &report
                .models
                .iter()
                .map(|m| m.model.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    let shades = ["#8a8a8a", "#1f5fa8", "#c36a00", "#2e8b57"];
    for (k, class) in first.classes.iter().enumerate() {
        let y0 = top + per_class * k as f64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\">{}</text>",
            y0 + bar,
            escape(class)
        );
        for (m, model) in report.models.iter().enumerate() {
            let share = model
                .axes
                .get(axis)
                .and_then(|a| a.distribution.as_ref())
                .and_then(|d| d.get(k).copied())
                .unwrap_or(0.0);
            let y = y0 + bar * m as f64;
            let _ = write!(
                svg,
                "<rect x=\"90\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{}\">{} {:.0}%</text>",
                300.0 * share,
                bar - 2.0,
                shades[m % shades.len()],
                95.0 + 300.0 * share,
                y + bar - 3.0,
                escape(&model.model),
                100.0 * share
            );
        }
        let target = first.target.get(k).copied().unwrap_or(0.0);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y0}\" y2=\"{}\" stroke=\"#000\" stroke-dasharray=\"3 2\"/>",
            y0 + per_class - gap,
            x = 90.0 + 300.0 * target
        );
    }
    svg.push_str("</svg>");
    svg
}

fn prompt_section(report: &Report, prompt: &str, slots: &[&ImageSlot], names: &[&str]) -> String {
    let mut html = format!("<section><h3>{}</h3>", escape(prompt));
    for axis in axis_names(report) {
        let per_model: Vec<String> = report
            .models
            .iter()
            .map(|m| {
                let d = m.axes.get(&axis).and_then(|a| {
                    a.per_prompt
                        .iter()
                        .find(|p| p.prompt == prompt)
                        .and_then(|p| p.discrepancy)
                });
                format!("{} {}", m.model, number(d))
            })
            .collect();
        let _ = write!(
            html,
            "<p>{} discrepancy: {}</p>",
            escape(&axis),
            escape(&per_model.join(" → "))
        );
    }
    // One column per starting noise, one image per model in it, so same-noise images stay aligned.
    html.push_str("<div class=\"grid\"><div class=\"slot\">");
    for name in names {
        let _ = write!(html, "<span class=\"label\">{}</span>", escape(name));
    }
    html.push_str("</div>");
    for slot in slots {
        html.push_str("<div class=\"slot\">");
        for image in &slot.models {
            html.push_str(&figure(image, &slot.name));
        }
        html.push_str("</div>");
    }
    html.push_str("</div>");
    html.push_str("</section>");
    html
}

/// Per trained model, its sample grids: one column per prompt and starting noise, one row per step.
fn samples_section(report: &Report) -> String {
    if report.samples.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h2>Samples during training</h2><p>The same prompts and starting noises at each step, \
         from the base model (step 0) to the trained one.</p>",
    );
    let mut models: Vec<&str> = Vec::new();
    for grid in &report.samples {
        if !models.contains(&grid.model.as_str()) {
            models.push(&grid.model);
        }
    }
    for model in models {
        let grids: Vec<_> = report.samples.iter().filter(|g| g.model == model).collect();
        let _ = write!(
            html,
            "<section><h3>{}</h3><div class=\"grid\"><div class=\"slot\">",
            escape(model)
        );
        for grid in &grids {
            let _ = write!(html, "<span class=\"label\">step {}</span>", grid.step);
        }
        html.push_str("</div>");
        for (column, cell) in grids[0].cells.iter().enumerate() {
            html.push_str("<div class=\"slot\">");
            for grid in &grids {
                let picture = match grid.cells.get(column).and_then(|c| c.thumbnail.as_ref()) {
                    Some(path) => format!(
                        "<img src=\"{}\" alt=\"{}\">",
                        escape(path),
                        escape(&cell.prompt)
                    ),
                    None => "<span>(missing)</span>".into(),
                };
                let _ = write!(html, "<figure>{picture}</figure>");
            }
            let _ = write!(
                html,
                "<p>{} #{}</p></div>",
                escape(&cell.prompt),
                cell.index
            );
        }
        html.push_str("</div></section>");
    }
    html
}

fn figure(image: &SlotImage, name: &str) -> String {
    let caption = if image.face_found {
        image
            .predicted
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        "no face".into()
    };
    let picture = match &image.thumbnail {
        Some(path) => format!(
            "<img src=\"{}\" alt=\"{}\" title=\"{}\">",
            escape(path),
            escape(&caption),
            escape(name)
        ),
        None => format!("<span>{} (unreadable)</span>", escape(name)),
    };
    format!(
        "<figure>{picture}<figcaption>{}</figcaption></figure>",
        escape(&caption)
    )
}

/// The quality metrics' names, as the first model's summary orders them.
pub(crate) fn quality_names(models: &[ModelSummary]) -> Vec<String> {
    models.first().map_or(Vec::new(), |m| {
        m.qualities().map(|q| q.scorer.clone()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use popalign_core::schema::report::{ImageSlot, SCHEMA_VERSION, SlotImage};

    #[test]
    fn a_prompt_with_markup_renders_as_text() {
        let attack = "<img src=x onerror=alert(1)>";
        let report = Report {
            schema_version: SCHEMA_VERSION,
            popalign_version: "test".into(),
            config_hash: "\"><script>".into(),
            config: serde_json::json!({"note": attack}),
            objective: "popalign".into(),
            models: vec![],
            table: attack.into(),
            training: vec![],
            carried_classifiers: vec![],
            samples: vec![],
            images: vec![ImageSlot {
                prompt: attack.into(),
                name: "a'b.png".into(),
                models: vec![SlotImage {
                    thumbnail: Some("images/base/a'b.png".into()),
                    face_found: false,
                    predicted: Default::default(),
                    probabilities: Default::default(),
                }],
            }],
        };
        let html = render(&report, true);
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("src=\"images/base/a&#39;b.png\""));
        assert!(
            !html.contains("<script"),
            "the page carries no script at all"
        );
    }
}
