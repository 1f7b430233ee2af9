//! Rebuilds llmux when the UI's build output changes. Release builds embed `ui/dist`
//! (rust-embed), and cargo does not know about those files: without this, a release binary
//! built before `npm run build` kept serving "The UI is not built" after it. Debug builds
//! read `ui/dist` from disk at request time and need nothing.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    // A path that does not exist would make cargo rerun this on every build; before the UI
    // is built, watch `ui` itself (a few dozen files), where `dist` will appear.
    let watched = if Path::new("ui/dist").exists() {
        "ui/dist"
    } else {
        "ui"
    };
    println!("cargo:rerun-if-changed={watched}");
}
