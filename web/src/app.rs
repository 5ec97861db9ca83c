//! The app: its root component and the entry point wasm-bindgen exports.

use crate::{Probe, Route, classify, fetch, gpu, overview, prompt};

use std::sync::Arc;

use leptos::prelude::*;
use popalign_core::schema::report::Report;
use wasm_bindgen::prelude::*;

/// Page title, rendered by Leptos (the static `<title>` in `www/index.html` says the same).
pub const TITLE: &str = "popalign report explorer";

/// Version of this crate, shown in the page header.
pub const WEB_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The report as loaded: still loading, loaded, or why it could not be.
#[derive(Clone)]
enum Loaded {
    Pending,
    Ok(Arc<Report>),
    Failed(String),
}

fn current_route() -> Route {
    Route::parse(&gloo::utils::window().location().hash().unwrap_or_default())
}

#[component]
fn App() -> impl IntoView {
    let (probe, set_probe) = signal(Probe::Pending);
    leptos::task::spawn_local(async move {
        let result = Probe::from_result(gpu::probe_webgpu().await);
        gloo::console::log!(format!("popalign-web: {}", result.message()));
        set_probe.set(result);
    });
    let (report, set_report) = signal(Loaded::Pending);
    leptos::task::spawn_local(async move {
        set_report.set(match fetch::report().await {
            Ok(r) => Loaded::Ok(Arc::new(r)),
            Err(why) => Loaded::Failed(why),
        });
    });
    let (route, set_route) = signal(current_route());
    let handle = window_event_listener(leptos::ev::hashchange, move |_| {
        set_route.set(current_route())
    });
    on_cleanup(move || handle.remove());
    provide_context(probe);

    let body = move || match report.get() {
        Loaded::Pending => view! { <p class="placeholder">"Loading report.json…"</p> }.into_any(),
        Loaded::Failed(why) => view! {
            <section id="report" class="placeholder">
                <p>"No report is loaded."</p>
                <p class="status error">{why}</p>
            </section>
        }
        .into_any(),
        Loaded::Ok(r) => match route.get() {
            Route::Overview => view! { <overview::Overview report=r /> }.into_any(),
            Route::Prompt(i) => view! { <prompt::PromptView report=r index=i /> }.into_any(),
        },
    };
    view! {
        <main id="app" data-app="popalign-web">
            <header>
                <h1 id="title"><a href="#/">{TITLE}</a></h1>
                <p class="version">"popalign-web " {WEB_VERSION} " · core " {popalign_core::VERSION}</p>
            </header>
            {body}
            <classify::DropZone carried=Signal::derive(move || match report.get() {
                Loaded::Ok(r) => r.carried_classifiers.clone(),
                _ => Vec::new(),
            }) />
            <footer>
                <p id="webgpu" class=move || probe.with(Probe::class)>{move || probe.with(Probe::message)}</p>
            </footer>
        </main>
    }
}

/// Entry point, called by the wasm-bindgen glue once the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    if let Some(boot) = gloo::utils::document().get_element_by_id("boot") {
        boot.remove();
    }
    leptos::mount::mount_to_body(App);
}
