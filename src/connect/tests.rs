use super::*;

fn target(key: Option<&str>) -> Target {
    Target {
        base_url: "http://127.0.0.1:8000".into(),
        anthropic_url: "http://127.0.0.1:8001".into(),
        proxy_key: key.map(str::to_owned),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn connect(client: Client, home: &Path, key: Option<&str>) -> Vec<Change> {
    let changes = plan_connect(client, home, &no_env, &target(key)).unwrap();
    apply(&changes, false).unwrap();
    changes
}

fn undo(client: Client, home: &Path) {
    let changes = plan_undo(client, home, &no_env).unwrap();
    apply(&changes, true).unwrap();
}

#[test]
fn claude_code_gets_the_anthropic_route_and_the_key_and_keeps_its_settings() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let original = r#"{"model": "opus", "env": {"DISABLE_TELEMETRY": "1"}, "permissions": {"allow": ["Bash(ls)"]}}"#;
    std::fs::write(&file, original).unwrap();

    let changes = connect(Client::Claude, home.path(), Some("proxy-key"));
    let diff = changes[0].diff();
    assert!(
        diff.contains("+    \"ANTHROPIC_BASE_URL\": \"http://127.0.0.1:8001\""),
        "{diff}"
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        written["env"]["ANTHROPIC_BASE_URL"],
        "http://127.0.0.1:8001"
    );
    assert_eq!(written["env"]["ANTHROPIC_AUTH_TOKEN"], "proxy-key");
    assert_eq!(written["env"]["DISABLE_TELEMETRY"], "1");
    assert_eq!(written["model"], "opus");
    assert_eq!(written["permissions"]["allow"][0], "Bash(ls)");
    assert_eq!(
        std::fs::read_to_string(home.path().join(".claude/settings.json.llmux-backup")).unwrap(),
        original
    );

    // A change the user makes afterwards survives the undo.
    let mut edited = written.clone();
    edited["model"] = Value::from("sonnet");
    std::fs::write(&file, edited.to_string()).unwrap();
    undo(Client::Claude, home.path());
    let restored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(
        restored["env"].get("ANTHROPIC_BASE_URL").is_none(),
        "{restored}"
    );
    assert!(restored["env"].get("ANTHROPIC_AUTH_TOKEN").is_none());
    assert_eq!(restored["env"]["DISABLE_TELEMETRY"], "1");
    assert_eq!(restored["model"], "sonnet");
    assert!(
        !home
            .path()
            .join(".claude/settings.json.llmux-backup")
            .exists()
    );
}

#[test]
fn codex_gets_a_responses_provider_with_comments_kept_and_its_old_provider_back_on_undo() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".codex/config.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let original = "# my codex\nmodel = \"gpt-5\" # the usual\nmodel_provider = \"openai\"\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\n";
    std::fs::write(&file, original).unwrap();

    connect(Client::Codex, home.path(), Some("proxy-key"));
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.starts_with("# my codex\nmodel = \"gpt-5\" # the usual\n"),
        "{written}"
    );
    assert!(written.contains("model_provider = \"llmux\""), "{written}");
    assert!(written.contains("[model_providers.llmux]"), "{written}");
    assert!(
        !written.contains("[model_providers]\n"),
        "no bare parent table: {written}"
    );
    let doc: toml_edit::DocumentMut = written.parse().unwrap();
    let provider = &doc["model_providers"]["llmux"];
    assert_eq!(
        provider["base_url"].as_str(),
        Some("http://127.0.0.1:8000/v1")
    );
    assert_eq!(provider["wire_api"].as_str(), Some("responses"));
    assert_eq!(provider["env_key"].as_str(), Some(CODEX_KEY_VARIABLE));
    assert!(written.contains("[mcp_servers.docs]"));

    undo(Client::Codex, home.path());
    let restored = std::fs::read_to_string(&file).unwrap();
    assert!(
        restored.contains("model_provider = \"openai\""),
        "{restored}"
    );
    assert!(!restored.contains("llmux"), "{restored}");
    assert!(restored.contains("# my codex") && restored.contains("[mcp_servers.docs]"));
}

#[test]
fn codex_without_a_proxy_key_names_no_key_variable_and_a_missing_file_is_created() {
    let home = tempfile::tempdir().unwrap();
    connect(Client::Codex, home.path(), None);
    let written = std::fs::read_to_string(home.path().join(".codex/config.toml")).unwrap();
    assert!(!written.contains("env_key"), "{written}");
    assert_eq!(
        std::fs::read_to_string(home.path().join(".codex/config.toml.llmux-backup")).unwrap(),
        "",
        "the backup says the file was empty"
    );
}

#[test]
fn gemini_cli_gets_the_base_url_in_its_env_file_and_the_api_key_auth_type() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".gemini");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "# mine\nGEMINI_API_KEY=real-google-key\nOTHER=1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("settings.json"),
        r#"{"security": {"auth": {"selectedType": "oauth-personal"}}, "ui": {"theme": "Dracula"}}"#,
    )
    .unwrap();

    let changes = connect(Client::Gemini, home.path(), None);
    let diff = changes[1].diff();
    assert!(
        !diff.contains("real-google-key"),
        "the user's own key is masked in the diff: {diff}"
    );
    assert!(diff.contains("-GEMINI_API_KEY=****-key\n"), "{diff}");
    assert!(
        diff.contains("+GEMINI_API_KEY=llmux-no-key-needed"),
        "{diff}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(
            mode(".env.llmux-backup"),
            0o600,
            "the backup holds the key: owner only"
        );
    }
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert_eq!(
        env,
        "# mine\nGEMINI_API_KEY=llmux-no-key-needed\nOTHER=1\nGOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8000\n"
    );
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    assert_eq!(
        settings["security"]["auth"]["selectedType"],
        "gemini-api-key"
    );
    assert_eq!(settings["ui"]["theme"], "Dracula");

    undo(Client::Gemini, home.path());
    assert_eq!(
        std::fs::read_to_string(dir.join(".env")).unwrap(),
        "# mine\nGEMINI_API_KEY=real-google-key\nOTHER=1\n"
    );
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    assert_eq!(
        settings["security"]["auth"]["selectedType"],
        "oauth-personal"
    );
}

#[test]
fn files_llmux_cannot_edit_safely_are_refused_and_undo_needs_a_connect_first() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{ // a comment\n \"model\": \"opus\" }").unwrap();
    let err = plan_connect(Client::Claude, home.path(), &no_env, &target(None)).unwrap_err();
    assert!(err.contains("edit it by hand"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{ // a comment\n \"model\": \"opus\" }"
    );
    let err = plan_undo(Client::Claude, home.path(), &no_env).unwrap_err();
    assert!(err.contains("nothing to undo"), "{err}");
    let codex = home.path().join(".codex/config.toml");
    std::fs::create_dir_all(codex.parent().unwrap()).unwrap();
    std::fs::write(&codex, "model = [unclosed").unwrap();
    let err = plan_connect(Client::Codex, home.path(), &no_env, &target(None)).unwrap_err();
    assert!(err.contains("not valid TOML"), "{err}");
}

#[test]
fn the_clis_own_home_variables_are_honoured() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = home.path().join("elsewhere");
    let env = |name: &str| (name == "CODEX_HOME").then(|| elsewhere.display().to_string());
    let changes = plan_connect(Client::Codex, home.path(), &env, &target(None)).unwrap();
    assert_eq!(changes[0].file, elsewhere.join("config.toml"));
}

#[test]
fn secret_looking_values_are_masked_and_everything_else_is_kept() {
    let text = r#"{"env": {"ANTHROPIC_API_KEY": "sk-ant-api03-abcdefghijkl", "ANTHROPIC_BASE_URL": "http://x"}}
api_key = 'short'
env_key = "LLMUX_API_KEY"
export OPENAI_API_KEY=sk-proj-0123456789wxyz
GEMINI_API_KEY=llmux-no-key-needed
"#;
    let masked = mask_secrets(text);
    assert!(
        masked.contains(r#""ANTHROPIC_API_KEY": "****ijkl""#),
        "{masked}"
    );
    assert!(masked.contains("api_key = '****'"), "{masked}");
    assert!(masked.contains(r#"env_key = "LLMUX_API_KEY""#), "{masked}");
    assert!(masked.contains("OPENAI_API_KEY=****wxyz"), "{masked}");
    assert!(
        masked.contains("GEMINI_API_KEY=llmux-no-key-needed"),
        "{masked}"
    );
    assert!(
        masked.contains(r#""ANTHROPIC_BASE_URL": "http://x""#),
        "{masked}"
    );
}

#[cfg(unix)]
#[test]
fn a_file_keeps_its_mode_and_a_linked_file_stays_linked() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let dotfiles = home.path().join("dotfiles/claude-settings.json");
    std::fs::create_dir_all(dotfiles.parent().unwrap()).unwrap();
    std::fs::write(&dotfiles, r#"{"model": "opus"}"#).unwrap();
    std::fs::set_permissions(&dotfiles, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&dotfiles, &link).unwrap();

    connect(Client::Claude, home.path(), None);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is kept"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&dotfiles).unwrap()).unwrap();
    assert_eq!(written["model"], "opus");
    assert_eq!(
        written["env"]["ANTHROPIC_BASE_URL"],
        "http://127.0.0.1:8001"
    );
    let mode = std::fs::metadata(&dotfiles).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(link.parent().unwrap())
        .unwrap()
        .chain(std::fs::read_dir(dotfiles.parent().unwrap()).unwrap())
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
