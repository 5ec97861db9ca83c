//! SVG charts drawn by us. Every bar carries its model's name and value as text, and the target is a
//! dashed line, so nothing depends on telling colours apart.

use leptos::prelude::*;

use crate::format::percent;

const LABEL: f64 = 90.0;
const WIDTH: f64 = 320.0;
const BAR: f64 = 18.0;
const GAP: f64 = 10.0;

/// One axis's class distribution per model (`None`: the model found no face) against the target.
#[component]
pub fn Distribution(
    axis: String,
    classes: Vec<String>,
    series: Vec<(String, Option<Vec<f64>>)>,
    target: Vec<f64>,
) -> impl IntoView {
    let group = series.len() as f64 * BAR + GAP;
    let height = classes.len() as f64 * group;
    let rows = classes
        .iter()
        .enumerate()
        .map(|(c, class)| {
            let top = c as f64 * group;
            let bars = series
                .iter()
                .enumerate()
                .map(|(m, (model, shares))| {
                    let share = shares.as_ref().and_then(|s| s.get(c).copied());
                    let y = top + m as f64 * BAR;
                    let text = share.map_or_else(|| format!("{model}: no faces"), |s| format!("{model} {}", percent(s)));
                    view! {
                        <rect class=format!("bar model-{m}") x=LABEL y=y + 2.0 height=BAR - 4.0
                            width=share.unwrap_or(0.0) * WIDTH />
                        <text x=LABEL + 4.0 y=y + BAR - 5.0 class="bar-label">{text}</text>
                    }
                })
                .collect_view();
            let t = target.get(c).copied().unwrap_or(0.0);
            view! {
                <text x=0 y=top + BAR - 5.0 class="class-label">{class.clone()}</text>
                {bars}
                <line class="target" x1=LABEL + t * WIDTH x2=LABEL + t * WIDTH y1=top y2=top + group - GAP />
            }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <svg role="img" aria-label=format!("{axis} distribution against the target")
                viewBox=format!("0 0 {} {height}", LABEL + WIDTH + 40.0) width=LABEL + WIDTH + 40.0 height=height>
                {rows}
            </svg>
            <figcaption>{format!("{axis}: share of images per class; dashed line: target")}</figcaption>
        </figure>
    }
}
