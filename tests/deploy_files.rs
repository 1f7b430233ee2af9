//! The deployment files in deploy/ (docs/deploy.md) against the llmux they deploy: the
//! systemd unit's command starts the real binary, every environment variable they set is a
//! setting llmux reads, and the probes they name are routes that answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::binary::{Llmux, free_port};

fn deploy_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(name),
    )
    .unwrap()
}

/// Every `NAME=` or `name: NAME` environment variable the file sets.
fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("- {name: ") {
            names.push(rest.split(',').next().unwrap().trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                names.push(pair.split('=').next().unwrap().to_owned());
            }
        }
    }
    names
}

#[test]
fn the_variables_the_files_set_are_settings_llmux_reads() {
    let set: Vec<String> = variables(&deploy_file("kubernetes.yaml"))
        .into_iter()
        .chain(variables(&deploy_file("Containerfile")))
        .filter(|name| name != "HOME")
        .collect();
    assert!(set.len() >= 5, "{set:?}");
    for name in &set {
        assert!(
            llmux::config::keys::SETTINGS
                .iter()
                .any(|s| s.env == Some(name.as_str())),
            "{name} is not a setting's variable"
        );
    }
}

#[tokio::test]
async fn the_unit_starts_llmux_and_the_probes_answer() {
    let unit = deploy_file("llmux.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/llmux"));
    let args: Vec<&str> = words.collect();
    assert_eq!(args[..2], ["serve", "--config"]);

    // The same arguments, with a config file of the test's own.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("llmux.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!("[proxy]\nport = {port}\nanthropic_port = 0\n"),
    )
    .unwrap();
    let llmux = Llmux::start_args(
        &["serve", "--config", config.to_str().unwrap()],
        dir.path(),
        &[],
    );
    let addr = llmux.next_address();
    let yaml = deploy_file("kubernetes.yaml");
    for probe in ["/health", "/ready"] {
        assert!(
            yaml.contains(&format!("path: {probe}")),
            "the example probes {probe}"
        );
        let status = reqwest::get(format!("http://{addr}{probe}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{probe}");
    }
}
