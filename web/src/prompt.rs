//! One prompt: its attribute histograms against the target per model, and its images, base and aligned
//! from the same noise side by side, filterable by predicted attribute and by confidence.

use std::collections::BTreeMap;
use std::sync::Arc;

use leptos::prelude::*;
use popalign_core::schema::report::{ImageSlot, Report};

use crate::charts::distributions;
use crate::classify::ClassifyButton;
use crate::format::prompts;
use crate::route::Route;

/// `(model index, axis, class)`: show the slots where that model predicted that class.
type AttributeFilter = Option<(usize, String, String)>;

#[component]
pub fn PromptView(report: Arc<Report>, index: usize) -> impl IntoView {
    let Some(prompt) = prompts(&report).get(index).cloned() else {
        return view! {
            <p class="status error">{format!("This report has no prompt number {index}.")}</p>
            <a href=Route::Overview.href()>"Back to the overview"</a>
        }
        .into_any();
    };
    let charts = distributions(&report, Some(&prompt));
    let (filter, set_filter) = signal::<AttributeFilter>(None);
    let (max_confidence, set_max_confidence) = signal(1.0_f64);
    let options = filter_options(&report);
    let labels: Vec<(usize, String, String, String)> = options.clone();
    let slots: Vec<ImageSlot> = report
        .images
        .iter()
        .filter(|s| s.prompt == prompt)
        .cloned()
        .collect();
    let models: Vec<String> = report.models.iter().map(|m| m.model.clone()).collect();
    let classes: BTreeMap<String, Vec<String>> = report.models[0]
        .axes
        .iter()
        .map(|(axis, a)| (axis.clone(), a.classes.clone()))
        .collect();
    let grid = move || {
        let filter = filter.get();
        let limit = max_confidence.get();
        slots
            .iter()
            .filter(|slot| shown(slot, &filter, limit))
            .map(|slot| {
                let cells = slot
                    .models
                    .iter()
                    .zip(&models)
                    .map(|(image, model)| {
                        let caption = if image.face_found {
                            image.predicted.values().cloned().collect::<Vec<_>>().join(" · ")
                        } else {
                            "no face found".to_string()
                        };
                        let picture = image.thumbnail.clone().map(|src| {
                            view! {
                                <img src=src.clone() alt=format!("{model}: {}", slot.name) width="64" height="64" class="pixelated" />
                                <ClassifyButton url=src native=image.probabilities.clone() classes=classes.clone() />
                            }
                        });
                        view! { <td class="image-cell" data-model=model.clone()>{picture}<div class="predicted">{caption}</div></td> }
                    })
                    .collect_view();
                view! { <tr><td class="slot-name">{slot.name.clone()}</td>{cells}</tr> }
            })
            .collect_view()
    };
    let header = report
        .models
        .iter()
        .map(|m| view! { <th>{m.model.clone()}</th> })
        .collect_view();
    view! {
        <section id="prompt" data-prompt-index=index.to_string()>
            <p><a href=Route::Overview.href()>"← overview"</a></p>
            <h2 id="prompt-title">{prompt.clone()}</h2>
            <div class="charts">{charts}</div>
            <div class="filters">
                <label>"Predicted attribute "
                    <select id="attribute-filter" on:change=move |ev| {
                        let i: Option<usize> = event_target_value(&ev).parse().ok();
                        set_filter.set(i.and_then(|i| options.get(i)).map(|(m, a, c, _)| (*m, a.clone(), c.clone())));
                    }>
                        <option value="all">"all images"</option>
                        {labels.into_iter().enumerate().map(|(i, (_, _, _, label))| view! { <option value=i.to_string()>{label}</option> }).collect_view()}
                    </select>
                </label>
                <label>" Top probability at most "
                    <select id="confidence-filter" on:change=move |ev| {
                        set_max_confidence.set(event_target_value(&ev).parse().unwrap_or(1.0));
                    }>
                        {["1.0", "0.99", "0.9", "0.75"].map(|v| view! { <option value=v>{v}</option> }).collect_view()}
                    </select>
                </label>
            </div>
            <table id="images"><thead><tr><th>"image"</th>{header}</tr></thead><tbody>{grid}</tbody></table>
        </section>
    }
    .into_any()
}

/// Every `(model, axis, class)` a filter can pick, with its label.
fn filter_options(report: &Report) -> Vec<(usize, String, String, String)> {
    report
        .models
        .iter()
        .enumerate()
        .flat_map(|(m, model)| {
            model.axes.iter().flat_map(move |(axis, a)| {
                a.classes.iter().map(move |class| {
                    (
                        m,
                        axis.clone(),
                        class.clone(),
                        format!("{}: {axis} = {class}", model.model),
                    )
                })
            })
        })
        .collect()
}

/// Whether a slot passes the filters: the chosen model predicted the chosen class, and some model's top
/// probability on some axis is at most `max_confidence`.
fn shown(slot: &ImageSlot, filter: &AttributeFilter, max_confidence: f64) -> bool {
    let attribute = filter.as_ref().is_none_or(|(m, axis, class)| {
        slot.models
            .get(*m)
            .and_then(|image| image.predicted.get(axis))
            == Some(class)
    });
    let confident = max_confidence >= 1.0
        || slot.models.iter().any(|image| {
            image
                .probabilities
                .values()
                .any(|p| p.iter().copied().fold(0.0, f64::max) <= max_confidence)
        });
    attribute && confident
}
