//! Embeds the browser explorer (`www/index.html`, `www/style.css` and the wasm-bindgen output in
//! `www/pkg/`, built by `tools/build-web.sh`) into the `popalign` binary when it has been built, so
//! `popalign report` can write it into every report folder. Without it the binary still builds and
//! reports carry only the static page; `cfg(web_bundle)` tells the two apart.

use std::path::Path;

fn main() {
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www");
    println!("cargo::rustc-check-cfg=cfg(web_bundle)");
    println!("cargo::rerun-if-changed={}", www.join("pkg").display());
    println!(
        "cargo::rerun-if-changed={}",
        www.join("index.html").display()
    );
    println!(
        "cargo::rerun-if-changed={}",
        www.join("style.css").display()
    );
    let pkg = www.join("pkg");
    let files = [
        "popalign_web_bg.wasm",
        "popalign_web.js",
        "popalign_web_wasm.js",
    ];
    if files.iter().all(|f| pkg.join(f).is_file()) {
        println!("cargo::rustc-cfg=web_bundle");
    }
}
