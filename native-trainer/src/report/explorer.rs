//! The browser explorer's files, embedded at build time (see `build.rs`), as a report folder needs them.

/// `(path inside the report folder, contents)`; empty when the binary was built before `tools/build-web.sh`.
#[cfg(web_bundle)]
pub const FILES: &[(&str, &[u8])] = &[
    ("explorer.html", include_bytes!("../../../www/index.html")),
    ("style.css", include_bytes!("../../../www/style.css")),
    (
        "pkg/popalign_web.js",
        include_bytes!("../../../www/pkg/popalign_web.js"),
    ),
    (
        "pkg/popalign_web_bg.wasm",
        include_bytes!("../../../www/pkg/popalign_web_bg.wasm"),
    ),
    (
        "pkg/popalign_web_wasm.js",
        include_bytes!("../../../www/pkg/popalign_web_wasm.js"),
    ),
];

#[cfg(not(web_bundle))]
pub const FILES: &[(&str, &[u8])] = &[];
