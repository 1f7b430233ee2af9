#![no_main]

// The bodies are shared with tests/fuzz_corpora.rs; each binary uses one of them.
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::upstream_openai_responses(data));
