//! SVG charts drawn by us. Every bar carries its model's name and value as text, and the target is a
//! dashed line, so nothing depends on telling colours apart.

use leptos::prelude::*;
use popalign_core::schema::report::Report;

use crate::format::{axes, percent};

const LABEL: f64 = 90.0;
const WIDTH: f64 = 320.0;
const BAR: f64 = 18.0;
const GAP: f64 = 10.0;

/// One [`Distribution`] per axis, every model of the report against the target: pooled over all
/// images, or over one prompt's.
pub fn distributions(report: &Report, prompt: Option<&str>) -> impl IntoView + use<> {
    axes(report)
        .into_iter()
        .map(|axis| {
            let first = &report.models[0].axes[&axis];
            let series = report
                .models
                .iter()
                .map(|m| {
                    let a = m.axes.get(&axis);
                    let shares = match prompt {
                        None => a.and_then(|a| a.distribution.clone()),
                        Some(prompt) => a
                            .and_then(|a| a.per_prompt.iter().find(|p| p.prompt == prompt))
                            .and_then(|p| p.distribution.clone()),
                    };
                    (m.model.clone(), shares)
                })
                .collect();
            view! { <Distribution axis=axis.clone() classes=first.classes.clone() series=series target=first.target.clone() /> }
        })
        .collect_view()
}

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

/// A training curve (`y` per step) as a polyline, with its range written on the axes.
#[component]
pub fn Curve(title: String, step: Vec<usize>, y: Vec<f64>) -> impl IntoView {
    const W: f64 = 320.0;
    const H: f64 = 120.0;
    const LEFT: f64 = 56.0;
    const BOTTOM: f64 = 18.0;
    let finite: Vec<(usize, f64)> = step
        .iter()
        .copied()
        .zip(y.iter().copied())
        .filter(|(_, v)| v.is_finite())
        .collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let (first, last) = (
        finite.first().map_or(0, |p| p.0),
        finite.last().map_or(0, |p| p.0),
    );
    let span = |a: f64, b: f64| if b > a { b - a } else { 1.0 };
    let points: String = finite
        .iter()
        .map(|(s, v)| {
            let x = LEFT
                + (*s as f64 - first as f64) / span(first as f64, last as f64) * (W - LEFT - 8.0);
            let y = 6.0 + (hi - v) / span(lo, hi) * (H - BOTTOM - 12.0);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    view! {
        <figure class="chart curve">
            <svg role="img" aria-label=title.clone() viewBox=format!("0 0 {W} {H}") width=W height=H>
                <polyline class="curve-line" points=points fill="none" />
                <text x=0 y=14 class="bar-label">{format!("{hi:.4}")}</text>
                <text x=0 y=H - BOTTOM class="bar-label">{format!("{lo:.4}")}</text>
                <text x=LEFT y=H - 3.0 class="bar-label">{format!("step {first}")}</text>
                <text x=W - 80.0 y=H - 3.0 class="bar-label">{format!("step {last}")}</text>
            </svg>
            <figcaption>{title}</figcaption>
        </figure>
    }
}
