//! The overview: discrepancy per axis before and after with confidence intervals, quality, face-found
//! rate, the run's configuration, and the list of prompts.

use std::sync::Arc;

use leptos::prelude::*;
use popalign_core::schema::report::Report;

use crate::charts::{Curve, distributions};
use crate::format::{axes, interval, number, prompts};
use crate::route::Route;

#[component]
pub fn Overview(report: Arc<Report>) -> impl IntoView {
    let header = report
        .models
        .iter()
        .map(|m| view! { <th>{m.model.clone()}</th> })
        .collect_view();
    let cell = |metric: String, model: &str, value: Option<f64>, detail: String| {
        view! {
            <td class="num" data-metric=metric data-model=model.to_string()
                data-value=value.map(|v| v.to_string()).unwrap_or_default()>
                {number(value)} " " <span class="ci">{detail}</span>
            </td>
        }
    };
    let axis_rows = axes(&report)
        .into_iter()
        .map(|axis| {
            let discrepancy = report
                .models
                .iter()
                .map(|m| {
                    let a = m.axes.get(&axis);
                    cell(
                        format!("discrepancy-{axis}"),
                        &m.model,
                        a.and_then(|a| a.discrepancy),
                        interval(a.and_then(|a| a.ci_images)),
                    )
                })
                .collect_view();
            let found = report
                .models
                .iter()
                .map(|m| {
                    let rate = m.axes.get(&axis).and_then(|a| a.face_found_rate);
                    cell(format!("face-found-{axis}"), &m.model, rate, String::new())
                })
                .collect_view();
            view! {
                <tr><th>{format!("{axis} discrepancy ‖p − target‖₂ [95% CI over images]")}</th>{discrepancy}</tr>
                <tr><th>{format!("{axis}: share of images with a face")}</th>{found}</tr>
            }
        })
        .collect_view();
    // One row per quality metric; the first is `quality` in the page's data attributes, the n-th `quality-n`.
    let scorers: Vec<String> = report
        .models
        .first()
        .map(|m| m.qualities().map(|q| q.scorer.clone()).collect())
        .unwrap_or_default();
    let quality_rows = scorers
        .into_iter()
        .enumerate()
        .map(|(i, scorer)| {
            let metric = match i {
                0 => "quality".to_string(),
                _ => format!("quality-{i}"),
            };
            let cells = report
                .models
                .iter()
                .map(|m| {
                    let q = m.qualities().nth(i);
                    cell(
                        metric.clone(),
                        &m.model,
                        q.map(|q| q.mean),
                        interval(q.map(|q| q.ci)),
                    )
                })
                .collect_view();
            view! { <tr><th>{format!("quality: {scorer} (mean [95% CI])")}</th>{cells}</tr> }
        })
        .collect_view();
    let charts = distributions(&report, None);
    view! {
        <section id="overview">
            <h2>"Overview"</h2>
            <p class="meta">
                "objective " <code>{report.objective.clone()}</code>
                " · configuration hash " <code id="config-hash">{report.config_hash.clone()}</code>
                " · popalign " {report.popalign_version.clone()}
            </p>
            <table id="summary">
                <thead><tr><th>"neutral prompts"</th>{header}</tr></thead>
                <tbody>
                    {axis_rows}
                    {quality_rows}
                </tbody>
            </table>
            <div class="charts">{charts}</div>
            <PromptList report=report.clone() />
            <Training report=report.clone() />
            <details><summary>"Run configuration"</summary>
                <pre id="config">{serde_json::to_string_pretty(&report.config).unwrap_or_default()}</pre>
            </details>
        </section>
    }
}

/// Every prompt with its per-prompt discrepancy per axis and model, linking to its page.
#[component]
fn PromptList(report: Arc<Report>) -> impl IntoView {
    let axes = axes(&report);
    let header = axes
        .iter()
        .flat_map(|axis| {
            report
                .models
                .iter()
                .map(move |m| view! { <th>{format!("{axis} · {}", m.model)}</th> })
        })
        .collect_view();
    let rows = prompts(&report)
        .into_iter()
        .enumerate()
        .map(|(i, prompt)| {
            let cells = axes
                .iter()
                .flat_map(|axis| {
                    report.models.iter().map(|m| {
                        let d = m
                            .axes
                            .get(axis)
                            .and_then(|a| a.per_prompt.iter().find(|p| p.prompt == prompt))
                            .and_then(|p| p.discrepancy);
                        view! { <td class="num">{number(d)}</td> }
                    })
                })
                .collect_view();
            view! { <tr><td><a class="prompt-link" href=Route::Prompt(i).href()>{prompt.clone()}</a></td>{cells}</tr> }
        })
        .collect_view();
    view! {
        <h3>"Per prompt"</h3>
        <p class="meta">"‖p − target‖₂ over each prompt's images; open a prompt to see them."</p>
        <table id="prompts"><thead><tr><th>"prompt"</th>{header}</tr></thead><tbody>{rows}</tbody></table>
    }
}

/// Loss and implicit accuracy per step of each trained run (`train/metrics.jsonl`).
#[component]
fn Training(report: Arc<Report>) -> impl IntoView {
    let curves = report
        .training
        .iter()
        .map(|c| {
            view! {
                <Curve title=format!("{}: loss", c.model) step=c.step.clone() y=c.loss.clone() />
                <Curve title=format!("{}: implicit accuracy", c.model) step=c.step.clone() y=c.implicit_accuracy.clone() />
            }
        })
        .collect_view();
    (!report.training.is_empty()).then(|| {
        view! {
            <h3>"Training"</h3>
            <div id="training" class="charts">{curves}</div>
        }
    })
}
