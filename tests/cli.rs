//! The `llmux` binary: config precedence, `config check|print`, and refusing unsafe binds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn llmux(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llmux"));
    command.args(args).current_dir(dir).env_clear();
    // A home with no llmux.toml, so the user's own config never leaks in.
    command
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"));
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn line_for<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} not printed:\n{printed}"))
}

#[test]
fn cli_beats_env_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    std::fs::write(&file, "[proxy]\nport = 9001\n").unwrap();
    let file = file.to_str().unwrap();

    let out = llmux(&["config", "print", "--config", file], &[], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        line_for(&printed, "port").contains("9001  # file"),
        "{printed}"
    );
    assert!(line_for(&printed, "host").contains("\"127.0.0.1\"  # default"));

    let out = llmux(
        &["config", "print", "--config", file],
        &[("APP_PORT", "9002")],
        dir.path(),
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        line_for(&printed, "port").contains("9002  # environment APP_PORT"),
        "{printed}"
    );

    let out = llmux(
        &["config", "print", "--config", file, "--port", "9003"],
        &[("APP_PORT", "9002")],
        dir.path(),
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        line_for(&printed, "port").contains("9003  # command line --port"),
        "{printed}"
    );
}

#[test]
fn config_print_masks_proxy_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = llmux(
        &["config", "print"],
        &[("LLM_INTERACTIVE_PROXY_API_KEY", "super-secret-proxy-key")],
        dir.path(),
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(!printed.contains("super-secret-proxy-key"), "{printed}");
    assert!(
        line_for(&printed, "api_keys").contains("\"****\""),
        "{printed}"
    );
}

#[test]
fn invalid_toml_and_values_name_the_key_the_value_and_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");

    std::fs::write(&file, "[proxy\nport = 1").unwrap();
    let out = llmux(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not valid TOML"), "{}", text(&out));

    std::fs::write(&file, "[proxy]\nport = \"eighty\"\n").unwrap();
    let out = llmux(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let message = text(&out);
    assert!(
        message.contains("proxy.port") && message.contains("bad.toml"),
        "{message}"
    );

    std::fs::write(&file, "[proxy]\nprot = 8000\n").unwrap();
    let out = llmux(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert!(
        text(&out).contains("prot"),
        "unknown keys are named: {}",
        text(&out)
    );

    std::fs::write(
        &file,
        "[backends.local]\ntype = \"openai-compatible\"\nbase_url = \"localhost:11434\"\n",
    )
    .unwrap();
    let out = llmux(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
        dir.path(),
    );
    let message = text(&out);
    assert!(
        message.contains("backends.local.base_url = 'localhost:11434' (from file"),
        "{message}"
    );

    let out = llmux(&["config", "check"], &[("APP_PORT", "many")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("APP_PORT='many'"), "{}", text(&out));

    let out = llmux(
        &["config", "check", "--default-backend", "nope"],
        &[],
        dir.path(),
    );
    let message = text(&out);
    assert!(
        message.contains("default_backend = 'nope' (from command line --default-backend)"),
        "{message}"
    );
    assert!(
        message.contains("mock, openai, openai-oauth, openrouter, qwen-oauth, zai"),
        "{message}"
    );

    let out = llmux(
        &["config", "check", "--config", "/nonexistent/llmux.toml"],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent/llmux.toml"));
}

#[test]
fn serving_a_public_address_without_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = llmux(&["--host", "0.0.0.0", "--port", "0"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let message = text(&out);
    assert!(message.contains("non-loopback"), "{message}");
    assert!(
        message.contains("LLM_INTERACTIVE_PROXY_API_KEY"),
        "{message}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/llmux.example.toml");
    let out = llmux(
        &["config", "check", "--config", example.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_example_config_documents_every_key() {
    use llmux::config::raw::{RawBackend, RawConfig};
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/llmux.example.toml"),
    )
    .unwrap();
    let mut keys = Vec::new();
    let defaults: RawConfig = toml::from_str("").unwrap();
    collect_keys(&toml::Value::try_from(&defaults).unwrap(), &mut keys);
    let every_backend_key = RawBackend {
        kind: Some(String::new()),
        api: Some(String::new()),
        base_url: Some(String::new()),
        api_key_env: Some(String::new()),
        api_keys_env: Some(Vec::new()),
        key_rotation: Some(String::new()),
        models: Some(Vec::new()),
        headers: Some(Default::default()),
        connect_timeout_seconds: Some(1.0),
        first_byte_timeout_seconds: Some(1.0),
        idle_timeout_seconds: Some(1.0),
        models_cache_seconds: Some(1),
        app_url: Some(String::new()),
        app_title: Some(String::new()),
        identity: Some(llmux::config::raw::RawIdentity {
            title: Some(String::new()),
            referer: Some(String::new()),
            user_agent: Some(String::new()),
        }),
        proxy_url: Some(String::new()),
        ca_file: Some(String::new()),
        credentials_path: Some(llmux::config::raw::OneOrMany::One(String::new())),
        token_url: Some(String::new()),
        client_id: Some(String::new()),
        refresh_ahead_seconds: Some(1.0),
        project: Some(String::new()),
        onboard_poll_seconds: Some(1.0),
        command: Some(String::new()),
        args: Some(Vec::new()),
        project_dir: Some(String::new()),
        auto_accept: Some(true),
        agent_idle_seconds: Some(1.0),
        response_text: Some(String::new()),
        chunks: Some(1),
        chunk_delay_ms: Some(1),
    };
    collect_keys(
        &toml::Value::try_from(&every_backend_key).unwrap(),
        &mut keys,
    );
    for key in keys {
        let documented = example.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{key} ="))
                || line.ends_with(&format!(".{key}]"))
                || line == format!("[{key}]")
        });
        assert!(
            documented,
            "config/llmux.example.toml does not document '{key}'"
        );
    }
}

fn collect_keys(value: &toml::Value, out: &mut Vec<String>) {
    if let toml::Value::Table(table) = value {
        for (key, value) in table {
            if key == "backends" {
                continue; // a map of ids, checked through RawBackend
            }
            if value.is_table() && !value.as_table().unwrap().is_empty() {
                collect_keys(value, out);
            } else {
                out.push(key.clone());
            }
        }
    }
}

/// Starts the real binary, makes one request through it, stops it with SIGTERM, and
/// returns its exit status and everything it logged.
#[cfg(unix)]
#[test]
fn the_binary_serves_logs_one_line_per_request_without_secrets_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["--port", "0", "--default-backend", "mock"])
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .env("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-secret-123")
        .env("OPENAI_API_KEY", "sk-upstream-secret-456")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "llmux exited:\n{log}"
        );
        log.push_str(&line);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#;
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer proxy-secret-123\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Hello from the llmux mock back-end."));

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    stderr.read_to_string(&mut log).unwrap();
    assert!(status.success(), "exit {status}:\n{log}");
    let request_lines: Vec<&str> = log.lines().filter(|l| l.contains(" request ")).collect();
    assert_eq!(request_lines.len(), 1, "{log}");
    let line = request_lines[0];
    for field in [
        "request_id=",
        "client=127.0.0.1",
        "backend=\"mock\"",
        "model=\"mock-model\"",
        "status=200",
        "latency_ms=",
        "output_tokens=",
    ] {
        assert!(line.contains(field), "{field} missing from: {line}");
    }
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains("proxy-secret-123") && !log.contains("sk-upstream-secret-456"),
        "{log}"
    );
}

#[test]
fn invalid_alias_patterns_are_rejected_and_malformed_model_aliases_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = llmux(
        &["config", "check", "--model-alias", "^gpt-(=openai:x"],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let message = text(&out);
    assert!(
        message.contains("model_aliases[0]") && message.contains("invalid regex '^gpt-('"),
        "{message}"
    );
    assert!(
        message.contains("--model-alias"),
        "names the source: {message}"
    );

    let out = llmux(
        &["config", "check"],
        &[("MODEL_ALIASES", "[not json")],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ignoring MODEL_ALIASES"),
        "{}",
        text(&out)
    );

    let out = llmux(
        &["config", "print"],
        &[(
            "MODEL_ALIASES",
            r#"[{"pattern": "^a$", "replacement": "mock:b"}]"#,
        )],
        dir.path(),
    );
    assert!(
        text(&out).contains("environment MODEL_ALIASES"),
        "{}",
        text(&out)
    );

    let out = llmux(
        &["config", "check", "--static-route", "nowhere:model"],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("static_route = 'nowhere:model'"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_redaction_pattern_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        "[capture]\nredact_patterns = ['ok-[a-z]+', 'key-(']\n",
    )
    .unwrap();
    let out = llmux(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let message = text(&out);
    assert!(
        message.contains("capture.redact_patterns") && message.contains("key-("),
        "{message}"
    );
}

/// Every proxy flag llm-interactive-proxy's README documents, so a seed user's scripts and
/// muscle memory work unchanged.
const SEED_FLAGS: &[&str] = &[
    "--auth-brute-force-initial-block",
    "--auth-brute-force-max-block",
    "--auth-brute-force-multiplier",
    "--auth-brute-force-ttl",
    "--auth-max-failed-attempts",
    "--capture-file",
    "--config",
    "--default-backend",
    "--disable-auth",
    "--disable-brute-force-protection",
    "--disable-edit-precision",
    "--disable-pytest-compression",
    "--edit-precision-exclude-agents",
    "--edit-precision-min-top-p",
    "--edit-precision-override-top-p",
    "--edit-precision-temperature",
    "--enable-brute-force-protection",
    "--enable-edit-precision",
    "--enable-planning-phase",
    "--enable-pytest-compression",
    "--force-context-window",
    "--force-model",
    "--host",
    "--model-alias",
    "--planning-phase-max-file-writes",
    "--planning-phase-max-turns",
    "--planning-phase-reasoning-effort",
    "--planning-phase-strong-model",
    "--planning-phase-temperature",
    "--planning-phase-thinking-budget",
    "--planning-phase-top-p",
    "--port",
    "--static-route",
    "--strict-command-detection",
];

#[test]
fn every_seed_flag_is_in_help() {
    let dir = tempfile::tempdir().unwrap();
    let help = text(&llmux(&["--help"], &[], dir.path()));
    for flag in SEED_FLAGS {
        let listed = help
            .lines()
            .any(|line| line.split([' ', ',', '=']).any(|word| word == *flag));
        assert!(listed, "{flag} is missing from llmux --help");
    }
}
