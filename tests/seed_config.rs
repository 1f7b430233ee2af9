//! A seed user's config.yaml loads as it is: every YAML snippet of llm-interactive-proxy's
//! README (tests/fixtures/seed_config/) gives the same configuration as its llmux TOML twin;
//! the seed's key names llmux spells differently load with a warning naming the new key;
//! broken YAML is refused naming the file and the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use llmux::config::{ConfigLoader, Loaded};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed_config")
}

fn load(path: &Path) -> Result<Loaded, String> {
    ConfigLoader::new()
        .file(path, true)
        .env(|_| None)
        .load()
        .map_err(|e| e.to_string())
}

#[test]
fn every_seed_snippet_loads_like_its_toml_twin() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let yaml = load(&fixtures().join(format!("{name}.yaml")))
            .unwrap_or_else(|e| panic!("{name}.yaml: {e}"));
        let toml = load(&fixtures().join(format!("{name}.toml")))
            .unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        assert_eq!(yaml.config, toml.config, "{name}");
        assert!(toml.warnings.is_empty(), "{name}: {:?}", toml.warnings);
    }
}

#[test]
fn the_seeds_capture_keys_load_with_a_warning_naming_llmux_keys() {
    let loaded = load(&fixtures().join("wire_capture.yaml")).unwrap();
    assert_eq!(
        loaded.config.capture.as_ref().map(|c| c.file.clone()),
        Some(PathBuf::from("logs/wire_capture.log"))
    );
    assert_eq!(loaded.warnings.len(), 7, "{:?}", loaded.warnings);
    assert!(
        loaded
            .warnings
            .contains(&"logging.capture_file is deprecated: llmux calls it capture.file".into()),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn back_end_files_beside_the_config_add_their_models_limits() {
    let seed = load(&fixtures().join("with_backend_files/config.yaml")).unwrap();
    let twin = load(&fixtures().join("backend_files.toml")).unwrap();
    assert_eq!(seed.config, twin.config);
    let limits = seed.config.limits.of("custom-models", "small-fast-model");
    assert_eq!(limits.max_input_tokens, Some(6000));
    assert_eq!(limits.requests_per_minute, Some(90), "the config file wins");
    assert!(
        seed.warnings
            .iter()
            .any(|w| w.contains("backend_type is not used")),
        "{:?}",
        seed.warnings
    );

    // A back-end file with a key llmux cannot place is refused, naming the file and the key.
    let dir = tempfile::tempdir().unwrap();
    let backend = dir.path().join("backends/local");
    std::fs::create_dir_all(&backend).unwrap();
    std::fs::write(backend.join("backend.yaml"), "api_url: http://x\n").unwrap();
    std::fs::write(dir.path().join("config.yaml"), "default_backend: mock\n").unwrap();
    let err = load(&dir.path().join("config.yaml")).err().unwrap();
    assert!(err.contains("backends/local/backend.yaml"), "{err}");
    assert!(err.contains("unknown key `api_url`"), "{err}");
}

#[test]
fn model_names_with_dots_keep_their_limits_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmux.toml");
    std::fs::write(
        &path,
        "[models.\"openai:gpt-4.1\".limits]\nmax_input_tokens = 5000\n",
    )
    .unwrap();
    let loaded = load(&path).unwrap();
    assert_eq!(
        loaded
            .config
            .limits
            .of("openai", "gpt-4.1")
            .max_input_tokens,
        Some(5000)
    );
    std::fs::write(&path, "[models.\"openai:gpt-4.1\"]\nlimitz = 1\n").unwrap();
    let err = load(&path).err().unwrap();
    assert!(err.contains("unknown field `limitz`"), "{err}");
    assert!(err.contains("llmux.toml, line 2)"), "{err}");
}

#[test]
fn an_import_writes_toml_that_loads_to_the_same_config() {
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    seeds.push(fixtures().join("with_backend_files/config.yaml"));
    let dir = tempfile::tempdir().unwrap();
    for seed in seeds {
        let toml =
            llmux::config::import(&seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
        let path = dir.path().join("imported.toml");
        std::fs::write(&path, &toml).unwrap();
        let imported = load(&path).unwrap_or_else(|e| panic!("{}: {e}\n{toml}", seed.display()));
        let original = load(&seed).unwrap();
        assert_eq!(
            imported.config,
            original.config,
            "{}\n{toml}",
            seed.display()
        );
        assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    }
    let capture = llmux::config::import(&fixtures().join("wire_capture.yaml")).unwrap();
    assert!(
        capture.contains("# the seed's logging.capture_file\nfile = \"logs/wire_capture.log\""),
        "{capture}"
    );
    let backend =
        llmux::config::import(&fixtures().join("with_backend_files/config.yaml")).unwrap();
    assert!(
        backend.contains("backends/custom-models/backend.yaml"),
        "{backend}"
    );
}

#[test]
fn the_import_command_writes_a_new_file_and_refuses_what_it_cannot_carry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("llmux.toml");
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
            .args(["config", "import"])
            .args(args)
            .output()
            .unwrap()
    };
    let seed = fixtures().join("planning_phase.yaml");
    let output = run(&[seed.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("[session.planning_phase]")
    );
    // An existing file is never overwritten.
    let again = run(&[seed.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cannot write"),
        "{again:?}"
    );
    // A key llmux has no place for: refused, named, nothing written.
    let bad = dir.path().join("config.yaml");
    std::fs::write(&bad, "proxy:\n  hots: 127.0.0.1\n").unwrap();
    let refused = run(&[bad.as_os_str()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("proxy.hots"),
        "{refused:?}"
    );
}

#[test]
fn broken_yaml_is_refused_naming_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "proxy:\n  host: 127.0.0.1\n  port: [8000\n").unwrap();
    let err = load(&path).err().unwrap();
    assert!(err.contains("config.yaml is not valid YAML"), "{err}");
    assert!(err.contains("line"), "{err}");

    // A key llmux does not know is still an error, naming the key, the file and the line.
    std::fs::write(
        &path,
        "# the proxy\nproxy:\n  port: 8000\n  hots: 127.0.0.1\n",
    )
    .unwrap();
    let err = load(&path).err().unwrap();
    assert!(err.contains("hots"), "{err}");
    assert!(err.contains("config.yaml, line 4)"), "{err}");

    // A document that is not a mapping.
    std::fs::write(&path, "- openai\n- anthropic\n").unwrap();
    let err = load(&path).err().unwrap();
    assert!(err.contains("not a mapping"), "{err}");
}

#[test]
fn llmux_serves_from_a_yaml_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "default_backend: mock\nproxy:\n  host: 127.0.0.1\n  port: 0\nlogging:\n  capture_file: null\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("configuration is valid"), "{text}");
}
