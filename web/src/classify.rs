//! The toy classifier re-run in the browser on WebGPU (burn-wgpu): on any shown image, compared with the
//! native probabilities stored in `report.json`, or on an image file the reader drops onto the page.

use std::collections::BTreeMap;

use burn::backend::Wgpu;
use burn::backend::wgpu::WgpuDevice;
use burn::prelude::*;
use leptos::prelude::*;
use popalign_core::eval::classify::kind::ClassifierKind;
use popalign_core::eval::classify::{Attributes, unit_rgb_planes};
use popalign_core::schema::report::CarriedClassifier;
use popalign_core::toy::classifier::readings;
use popalign_core::toy::world::SIZE;
use popalign_core::toy::{TOY, ToyClassifier};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::Probe;
use crate::gpu::{js_err, read_back};

/// Decodes an image file and classifies it on the WebGPU device the probe initialised.
pub async fn classify_bytes(bytes: &[u8]) -> Result<Attributes, String> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| format!("not a readable image: {e}"))?
        .to_rgb8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    if (w, h) != (SIZE, SIZE) {
        return Err(format!(
            "the toy classifier reads {SIZE}×{SIZE} toy-world images; this one is {w}×{h}"
        ));
    }
    let device = WgpuDevice::default();
    let pixels = unit_rgb_planes(image.as_raw(), w, h);
    let input = Tensor::<Wgpu, 1>::from_floats(pixels.as_slice(), &device).reshape([1, 3, h, w]);
    let t = ToyClassifier::<Wgpu>::new(&TOY, &device).read_tensors(input);
    let data = [
        read_back(t.colour).await?,
        read_back(t.occupation).await?,
        read_back(t.wide).await?,
        read_back(t.contrast).await?,
    ];
    Ok(readings(data)
        .pop()
        .ok_or("the classifier returned nothing")?
        .attributes())
}

/// Largest |browser − native| over every class of every axis, or why they cannot be compared.
pub fn max_difference(
    browser: &BTreeMap<String, Vec<f64>>,
    native: &BTreeMap<String, Vec<f64>>,
) -> Result<f64, String> {
    if browser.keys().ne(native.keys()) {
        return Err(format!(
            "axes differ: browser {:?}, native {:?}",
            browser.keys().collect::<Vec<_>>(),
            native.keys().collect::<Vec<_>>()
        ));
    }
    let mut max = 0.0_f64;
    for (axis, b) in browser {
        let n = &native[axis];
        if b.len() != n.len() {
            return Err(format!(
                "{axis}: {} classes in the browser, {} native",
                b.len(),
                n.len()
            ));
        }
        max = b
            .iter()
            .zip(n)
            .map(|(b, n)| (b - n).abs())
            .fold(max, f64::max);
    }
    Ok(max)
}

/// `gender: tall 0.0006 · wide 0.9994; race: …`, or that no figure (the toy world's face) was found.
fn describe(attributes: &Attributes, classes: &BTreeMap<String, Vec<String>>) -> String {
    if !attributes.face_found {
        return "no figure or face found".into();
    }
    attributes
        .probabilities
        .iter()
        .map(|(axis, p)| {
            let names = classes.get(axis).cloned().unwrap_or_default();
            let parts: Vec<String> = p
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{} {v:.4}", names.get(i).map_or("?", String::as_str)))
                .collect();
            format!("{axis}: {}", parts.join(" · "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "Classify in the browser" under a shown image; the result line carries `data-max-diff`.
#[component]
pub fn ClassifyButton(
    url: String,
    native: BTreeMap<String, Vec<f64>>,
    classes: BTreeMap<String, Vec<String>>,
) -> impl IntoView {
    let (result, set_result) = signal(None::<(String, Option<f64>)>);
    let probe = use_context::<ReadSignal<Probe>>();
    let run = move |_| {
        let (url, native, classes) = (url.clone(), native.clone(), classes.clone());
        if let Err(why) = gpu_ready_with(probe) {
            set_result.set(Some((why, None)));
            return;
        }
        set_result.set(Some(("classifying…".into(), None)));
        leptos::task::spawn_local(async move {
            let outcome = async {
                let bytes = crate::fetch::bytes(&url).await?;
                let attributes = classify_bytes(&bytes).await?;
                let diff = if native.is_empty() && !attributes.face_found {
                    0.0
                } else {
                    max_difference(&attributes.probabilities, &native)?
                };
                Ok::<_, String>((
                    format!(
                        "browser: {} · max |browser − native| = {diff:.1e}",
                        describe(&attributes, &classes)
                    ),
                    Some(diff),
                ))
            }
            .await;
            set_result.set(Some(outcome.unwrap_or_else(|why| (why, None))));
        });
    };
    view! {
        <button class="classify" on:click=run>"classify in browser"</button>
        {move || result.get().map(|(text, diff)| view! {
            <div class="browser-result" data-max-diff=diff.map(|d| d.to_string()).unwrap_or_default()>{text}</div>
        })}
    }
}

fn gpu_ready_with(probe: Option<ReadSignal<Probe>>) -> Result<(), String> {
    match probe.map(|p| p.get_untracked()) {
        Some(Probe::Ok(_)) => Ok(()),
        Some(Probe::Pending) => Err("WebGPU is still starting; try again in a moment".into()),
        Some(Probe::Unavailable(why)) => Err(format!("WebGPU not available: {why}")),
        None => Err("WebGPU was not probed".into()),
    }
}

/// Which classifier reads a dropped image: the toy world's, or one the report carries (faces, CLIP).
#[derive(Clone, Debug, PartialEq)]
enum DropClassifier {
    Toy,
    Carried(CarriedClassifier),
}

impl DropClassifier {
    fn classes(&self) -> BTreeMap<String, Vec<String>> {
        match self {
            DropClassifier::Toy => BTreeMap::from([
                (
                    "gender".to_string(),
                    TOY.shapes.iter().map(|v| v.label.to_string()).collect(),
                ),
                (
                    "race".to_string(),
                    TOY.colours
                        .iter()
                        .map(|c| c.value.label.to_string())
                        .collect(),
                ),
            ]),
            DropClassifier::Carried(c) => c
                .axes
                .iter()
                .map(|a| (a.name.clone(), a.classes.clone()))
                .collect(),
        }
    }

    async fn classify(&self, bytes: &[u8]) -> Result<Attributes, String> {
        match self {
            DropClassifier::Toy => classify_bytes(bytes).await,
            DropClassifier::Carried(c) if c.kind == ClassifierKind::Clip => {
                crate::clip::classify(&*crate::clip::shared(c).await?, bytes).await
            }
            DropClassifier::Carried(c) => {
                crate::faces::FaceClassifier::shared(c)
                    .await?
                    .classify(bytes)
                    .await
            }
        }
    }
}

/// Drop an image file (or choose one) to classify it in the browser, with the toy classifier or, where the
/// report carries any, a carried classifier (the first is the default then). The result line carries the probabilities
/// as JSON (`data-attributes`) and the time taken (`data-ms`).
#[component]
pub fn DropZone(carried: Signal<Vec<CarriedClassifier>>) -> impl IntoView {
    let (result, set_result) = signal((String::new(), String::new(), String::new()));
    let (chosen, set_chosen) = signal(None::<usize>);
    let probe = use_context::<ReadSignal<Probe>>();
    // Menu index: 0 the toy classifier, i the carried classifier i − 1; until the reader chooses, the
    // first carried one where there is one.
    let selected = move || {
        chosen
            .get()
            .unwrap_or(if carried.with(Vec::is_empty) { 0 } else { 1 })
    };
    let classifier = move || match selected() {
        0 => DropClassifier::Toy,
        i => carried
            .get()
            .get(i - 1)
            .cloned()
            .map_or(DropClassifier::Toy, DropClassifier::Carried),
    };
    let take = move |file: Option<web_sys::File>| {
        let Some(file) = file else { return };
        if let Err(why) = gpu_ready_with(probe) {
            set_result.set((why, String::new(), String::new()));
            return;
        }
        let classifier = classifier();
        let name = file.name();
        set_result.set((
            format!("{name}: classifying…"),
            String::new(),
            String::new(),
        ));
        leptos::task::spawn_local(async move {
            let start = js_sys::Date::now();
            let outcome = async {
                let buffer = JsFuture::from(file.array_buffer())
                    .await
                    .map_err(|e| js_err(&name, e))?;
                let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                classifier.classify(&bytes).await
            }
            .await;
            let ms = format!("{:.0}", js_sys::Date::now() - start);
            set_result.set(match outcome {
                Ok(a) => (
                    format!("{name}: {}", describe(&a, &classifier.classes())),
                    serde_json::to_string(&a).unwrap_or_default(),
                    ms,
                ),
                Err(why) => (format!("{name}: {why}"), String::new(), ms),
            });
        });
    };
    let take_drop = take.clone();
    let options = move || {
        let mut names = vec!["the toy figure classifier".to_string()];
        names.extend(carried.get().iter().map(|c| {
            let axes = c
                .axes
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(" and ");
            match c.kind {
                ClassifierKind::Clip => format!("clip: zero-shot {axes} on the whole image"),
                kind => format!("{kind}: MTCNN, then {axes}"),
            }
        }));
        names
            .into_iter()
            .enumerate()
            .map(|(i, n)| view! { <option value=i.to_string() selected=selected() == i>{n}</option> })
            .collect_view()
    };
    view! {
        <section id="drop" class="dropzone"
            on:dragover=|ev: web_sys::DragEvent| ev.prevent_default()
            on:drop=move |ev: web_sys::DragEvent| {
                ev.prevent_default();
                take_drop(ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)));
            }>
            <p>"Drop an image here, or choose one, to classify it in your browser with "
                <select id="drop-classifier" on:change=move |ev| set_chosen.set(event_target_value(&ev).parse().ok())>
                    {options}
                </select>
                ": "
                <input id="drop-file" type="file" accept="image/*" on:change=move |ev| {
                    let input: Option<web_sys::HtmlInputElement> = ev.target().and_then(|t| t.dyn_into().ok());
                    take(input.and_then(|i| i.files()).and_then(|f| f.get(0)));
                } />
            </p>
            <p id="drop-result" class="status" data-attributes=move || result.get().1 data-ms=move || result.get().2>
                {move || result.get().0}
            </p>
        </section>
    }
}
