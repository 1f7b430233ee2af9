//! The desktop commands' TypeScript types, generated from these Rust types into
//! ui/src/generated/desktop.ts so the UI and the app cannot drift apart.
//! `LLMUX_WRITE_TS_TYPES=1 cargo test typescript` (in src-tauri) rewrites the file.

use ts_rs::{Config, TS};

use crate::keychain::{BackendKeys, KeyInfo, KeySource};
use crate::proxy::{State, Status};
use crate::proxy_key::ProxyKeyStatus;
use crate::updates::{Release, UpdateStatus};

const GENERATED: &str = "../ui/src/generated/desktop.ts";

fn declarations() -> String {
    let cfg = Config::new().with_large_int("number");
    let decls = [
        State::decl(&cfg),
        Status::decl(&cfg),
        KeySource::decl(&cfg),
        KeyInfo::decl(&cfg),
        BackendKeys::decl(&cfg),
        ProxyKeyStatus::decl(&cfg),
        Release::decl(&cfg),
        UpdateStatus::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from the desktop app's Rust types (src-tauri) by the `typescript` test in\n\
         // src-tauri/src/typescript.rs. Do not edit by hand.\n",
    );
    for decl in decls {
        out.push_str("\nexport ");
        out.push_str(&decl);
        out.push('\n');
    }
    out
}

#[test]
fn the_ui_types_match_the_desktop_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GENERATED);
    let generated = declarations();
    if std::env::var_os("LLMUX_WRITE_TS_TYPES").is_some() {
        std::fs::write(&path, &generated).expect("write the generated types");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{GENERATED} is out of date; run LLMUX_WRITE_TS_TYPES=1 cargo test typescript in \
         src-tauri and commit it"
    );
}
