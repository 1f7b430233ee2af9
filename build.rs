//! Build steps cargo does not know about.
//!
//! Rebuilds llmux when the UI's build output changes. Release builds embed `ui/dist`
//! (rust-embed), and cargo does not know about those files: without this, a release binary
//! built before `npm run build` kept serving "The UI is not built" after it. Debug builds
//! read `ui/dist` from disk at request time and need nothing.
//!
//! Release builds of the `llmux` binary place the functions llmux runs together
//! (`link/llmux.order`, written by `bench/symbol-order.sh`), so fewer pages of its code are
//! mapped; see that script.

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
    order_functions();
}

/// Passes `link/llmux.order` to the linker when the linker reads it: lld does (rustc's
/// default on x86_64 Linux since Rust 1.90), GNU ld and the macOS and Windows linkers do
/// not, so a tiny program is linked with it first and the list is left out if that fails.
/// Names lld does not find (the list is from an earlier build) are skipped quietly.
fn order_functions() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/llmux.order");
    // Watched only when it is there: a missing path would rerun this on every build.
    if !order.exists() {
        return;
    }
    println!("cargo:rerun-if-changed={}", order.display());
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    if links_with(&args) {
        for arg in args {
            println!("cargo:rustc-link-arg-bin=llmux={arg}");
        }
    }
}

/// Whether rustc, with this build's target, linker and flags, links a program with `args`.
fn links_with(args: &[String]) -> bool {
    let var = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let Some(out) = var("OUT_DIR") else {
        return false;
    };
    let source = Path::new(&out).join("order_probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let mut rustc = std::process::Command::new(var("RUSTC").unwrap_or_else(|| "rustc".into()));
    // Lints are no reason to leave the list out (a `-D` in RUSTFLAGS would fail the probe).
    rustc
        .arg("--cap-lints=allow")
        .arg(&source)
        .arg("-o")
        .arg(Path::new(&out).join("order_probe"));
    if let Some(target) = var("TARGET") {
        rustc.args(["--target", &target]);
    }
    if let Some(linker) = var("RUSTC_LINKER") {
        rustc.arg(format!("-Clinker={linker}"));
    }
    if let Some(flags) = var("CARGO_ENCODED_RUSTFLAGS") {
        rustc.args(flags.split('\u{1f}'));
    }
    for arg in args {
        rustc.arg(format!("-Clink-arg={arg}"));
    }
    rustc
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
