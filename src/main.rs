//! The `llmux` command line: `llmux [serve]`, `llmux config check`, `llmux config print`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use llmux::admin::settings::SettingsSource;
use llmux::config::{ConfigLoader, Loaded, LogFormat, default_config_path};
use llmux::credentials::EnvSecrets;
use llmux::{Config, Engine};

#[derive(Parser)]
#[command(name = "llmux", version, about = "LLM interactive proxy", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Inspect the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the configuration; exits non-zero with every problem found.
    Check,
    /// Print the effective configuration with the source of each value (secrets masked).
    Print,
}

/// Flags override the environment, which overrides the config file.
#[derive(Args)]
struct Options {
    /// Config file (TOML). Default: llmux.toml in the user config directory, if present.
    #[arg(long, global = true, env = "LLMUX_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [proxy.host, APP_HOST].
    #[arg(long, global = true)]
    host: Option<String>,
    /// Port to listen on [proxy.port, APP_PORT].
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Dedicated Anthropic port; default port + 1, 0 disables [proxy.anthropic_port, ANTHROPIC_PORT].
    #[arg(long, global = true)]
    anthropic_port: Option<u16>,
    /// Back-end for models without a `backend:` prefix [default_backend, LLM_BACKEND].
    #[arg(long, global = true, value_name = "NAME")]
    default_backend: Option<String>,
    /// Send every request to BACKEND:MODEL (session overrides still win) [static_route, STATIC_ROUTE].
    #[arg(long, global = true, value_name = "BACKEND:MODEL")]
    static_route: Option<String>,
    /// Replace every client's model with MODEL [force_model, FORCE_MODEL].
    #[arg(long, global = true, value_name = "MODEL")]
    force_model: Option<String>,
    /// Rewrite model names: "PATTERN=REPLACEMENT", regex with \1 groups; repeatable, first
    /// match wins [model_aliases, MODEL_ALIASES].
    #[arg(
        long = "model-alias",
        global = true,
        value_name = "PATTERN=REPLACEMENT"
    )]
    model_aliases: Vec<String>,
    /// Route the first turns of a session to a strong model [session.planning_phase.enabled,
    /// PLANNING_PHASE_ENABLED].
    #[arg(long, global = true)]
    enable_planning_phase: bool,
    /// The planning phase's model [PLANNING_PHASE_STRONG_MODEL].
    #[arg(long, global = true, value_name = "BACKEND:MODEL")]
    planning_phase_strong_model: Option<String>,
    /// Planning turns before switching back [PLANNING_PHASE_MAX_TURNS].
    #[arg(long, global = true, value_name = "N")]
    planning_phase_max_turns: Option<u64>,
    /// File-writing tool calls that end the planning phase [PLANNING_PHASE_MAX_FILE_WRITES].
    #[arg(long, global = true, value_name = "N")]
    planning_phase_max_file_writes: Option<u64>,
    /// Temperature during planning [PLANNING_PHASE_TEMPERATURE].
    #[arg(long, global = true, value_name = "FLOAT")]
    planning_phase_temperature: Option<f64>,
    /// top_p during planning [PLANNING_PHASE_TOP_P].
    #[arg(long, global = true, value_name = "FLOAT")]
    planning_phase_top_p: Option<f64>,
    /// Reasoning effort during planning [PLANNING_PHASE_REASONING_EFFORT].
    #[arg(long, global = true, value_name = "EFFORT")]
    planning_phase_reasoning_effort: Option<String>,
    /// Thinking budget during planning [PLANNING_PHASE_THINKING_BUDGET].
    #[arg(long, global = true, value_name = "TOKENS")]
    planning_phase_thinking_budget: Option<u64>,
    /// Lower temperature after a failed file edit (on by default) [edit_precision.enabled,
    /// EDIT_PRECISION_ENABLED].
    #[arg(long, global = true, conflicts_with = "disable_edit_precision")]
    enable_edit_precision: bool,
    /// Turn edit-precision tuning off.
    #[arg(long, global = true)]
    disable_edit_precision: bool,
    /// Temperature after a failed edit (default 0.1) [EDIT_PRECISION_TEMPERATURE].
    #[arg(long, global = true, value_name = "FLOAT")]
    edit_precision_temperature: Option<f64>,
    /// top_p cap after a failed edit, with --edit-precision-override-top-p (default 0.3)
    /// [EDIT_PRECISION_MIN_TOP_P].
    #[arg(long, global = true, value_name = "FLOAT")]
    edit_precision_min_top_p: Option<f64>,
    /// Also cap top_p after a failed edit [EDIT_PRECISION_OVERRIDE_TOP_P].
    #[arg(long, global = true)]
    edit_precision_override_top_p: bool,
    /// User agents edit-precision tuning never applies to [EDIT_PRECISION_EXCLUDE_AGENTS_REGEX].
    #[arg(
        long = "edit-precision-exclude-agents",
        global = true,
        value_name = "REGEX"
    )]
    edit_precision_exclude_agents: Option<String>,
    /// Write the provider traffic to FILE as JSON Lines (the seed's format) [capture.file,
    /// CAPTURE_FILE].
    #[arg(long, global = true, value_name = "FILE")]
    capture_file: Option<String>,
    /// Record every request (prompt, answer, both wire legs, status, tokens) in the SQLite
    /// file FILE, browsable from the admin API [capture.db, CAPTURE_DB].
    #[arg(long, global = true, value_name = "FILE")]
    capture_db: Option<String>,
    /// Capture bytes buffered before a write (default 65536) [CAPTURE_BUFFER_SIZE].
    #[arg(long, global = true, value_name = "BYTES")]
    capture_buffer_size: Option<u64>,
    /// Seconds a capture record may wait in the buffer (default 1.0) [CAPTURE_FLUSH_INTERVAL].
    #[arg(long, global = true, value_name = "SECONDS")]
    capture_flush_interval: Option<f64>,
    /// Capture records per write at most (default 100) [CAPTURE_MAX_ENTRIES_PER_FLUSH].
    #[arg(long, global = true, value_name = "N")]
    capture_max_entries_per_flush: Option<u64>,
    /// Capture file size that triggers rotation (default 100 MB) [CAPTURE_MAX_BYTES].
    #[arg(long, global = true, value_name = "BYTES")]
    capture_max_bytes: Option<u64>,
    /// Rotated capture files kept (default 5) [CAPTURE_MAX_FILES].
    #[arg(long, global = true, value_name = "N")]
    capture_max_files: Option<u64>,
    /// All capture files together at most (default 500 MB) [CAPTURE_TOTAL_MAX_BYTES].
    #[arg(long, global = true, value_name = "BYTES")]
    capture_total_max_bytes: Option<u64>,
    /// Only commands on the last non-blank line of a message count
    /// [strict_command_detection, STRICT_COMMAND_DETECTION].
    #[arg(long, global = true)]
    strict_command_detection: bool,
    /// What starts an in-chat command (default "!/") [command_prefix, COMMAND_PREFIX].
    #[arg(long, global = true, value_name = "PREFIX")]
    command_prefix: Option<String>,
    /// Turn proxy auth off; forces host 127.0.0.1 [auth.disable_auth, DISABLE_AUTH].
    #[arg(long, global = true)]
    disable_auth: bool,
    /// Log level or filter, e.g. debug or llmux=debug,hyper=warn [logging.level, LOG_LEVEL].
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json [logging.format].
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    /// An IP or CIDR range that skips auth; repeatable [auth.trusted_ips, TRUSTED_IPS].
    #[arg(long = "trusted-ip", global = true, value_name = "IP_OR_CIDR")]
    trusted_ips: Vec<String>,
    /// A host name llmux answers besides loopback names and IP addresses; repeatable;
    /// "*" turns the Host check off [proxy.allowed_hosts, ALLOWED_HOSTS].
    #[arg(long = "allowed-host", global = true, value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// A web origin (scheme://host[:port]) allowed to call llmux from a browser, with
    /// CORS; repeatable [proxy.allowed_origins, ALLOWED_ORIGINS].
    #[arg(long = "allowed-origin", global = true, value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Seconds a client has to send a whole request head (default 10)
    /// [proxy.header_read_timeout_seconds, HEADER_READ_TIMEOUT_SECONDS].
    #[arg(long, global = true, value_name = "SECONDS")]
    header_read_timeout: Option<f64>,
    /// Seconds an idle keep-alive connection stays open (default 60)
    /// [proxy.keep_alive_timeout_seconds, KEEP_ALIVE_TIMEOUT_SECONDS].
    #[arg(long, global = true, value_name = "SECONDS")]
    keep_alive_timeout: Option<f64>,
    /// Open client connections at most; 0 sizes it from the open-file limit (default)
    /// [proxy.max_connections, MAX_CONNECTIONS].
    #[arg(long, global = true, value_name = "N")]
    max_connections: Option<u64>,
    /// Requests one client address may have running at once; 0 is no limit (default)
    /// [proxy.max_concurrent_requests_per_ip, MAX_CONCURRENT_REQUESTS_PER_IP].
    #[arg(long, global = true, value_name = "N")]
    max_concurrent_requests_per_ip: Option<u64>,
    /// Request bodies above this many bytes get 413 [proxy.max_body_bytes].
    #[arg(long, global = true, value_name = "BYTES")]
    max_body_bytes: Option<u64>,
    /// Turn brute-force protection on [auth.brute_force_protection.enabled].
    #[arg(long, global = true, conflicts_with = "disable_brute_force_protection")]
    enable_brute_force_protection: bool,
    /// Turn brute-force protection off [BRUTE_FORCE_PROTECTION_ENABLED=false].
    #[arg(long, global = true)]
    disable_brute_force_protection: bool,
    /// Invalid keys allowed per IP within the window [BRUTE_FORCE_MAX_FAILED_ATTEMPTS].
    #[arg(long, global = true, value_name = "N")]
    auth_max_failed_attempts: Option<u32>,
    /// Window for counting invalid keys, seconds [BRUTE_FORCE_TTL_SECONDS].
    #[arg(long, global = true, value_name = "SECONDS")]
    auth_brute_force_ttl: Option<u64>,
    /// First block, seconds [BRUTE_FORCE_INITIAL_BLOCK_SECONDS].
    #[arg(long, global = true, value_name = "SECONDS")]
    auth_brute_force_initial_block: Option<u64>,
    /// Growth of each further block [BRUTE_FORCE_BLOCK_MULTIPLIER].
    #[arg(long, global = true, value_name = "FACTOR")]
    auth_brute_force_multiplier: Option<f64>,
    /// Longest block, seconds [BRUTE_FORCE_MAX_BLOCK_SECONDS].
    #[arg(long, global = true, value_name = "SECONDS")]
    auth_brute_force_max_block: Option<u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("llmux: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let loader = config_loader(&cli.options);
    let loaded = loader.clone().load();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config {
            action: ConfigAction::Check,
        } => Ok(check(loaded)),
        Command::Config {
            action: ConfigAction::Print,
        } => match loaded {
            Ok(loaded) => {
                let mut out = std::io::stdout().lock();
                out.write_all(loaded.print().as_bytes())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => Ok(report_invalid(&err)),
        },
        Command::Serve => match loaded {
            Ok(loaded) => serve(loaded, loader),
            Err(err) => Ok(report_invalid(&err)),
        },
    }
}

fn report_invalid(err: &llmux::config::ConfigError) -> ExitCode {
    eprintln!("llmux: invalid configuration:\n{err}");
    ExitCode::from(2)
}

fn check(loaded: Result<Loaded, llmux::config::ConfigError>) -> ExitCode {
    match loaded {
        Ok(loaded) => {
            for note in &loaded.notes {
                eprintln!("note: {note}");
            }
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(err) => report_invalid(&err),
    }
}

/// The loader the command line describes: its file, the environment and its flags. Kept by
/// `serve`, so settings changed at run time are checked against the same layers.
fn config_loader(options: &Options) -> ConfigLoader {
    let mut loader = ConfigLoader::new();
    match &options.config {
        Some(path) => loader = loader.file(path, true),
        None => {
            if let Some(path) = default_config_path() {
                loader = loader.file(path, false);
            }
        }
    }
    let int = |v: u64| toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
    if let Some(host) = &options.host {
        loader = loader.set("proxy.host", host.as_str(), "--host");
    }
    if let Some(port) = options.port {
        loader = loader.set("proxy.port", int(port.into()), "--port");
    }
    if let Some(port) = options.anthropic_port {
        loader = loader.set("proxy.anthropic_port", int(port.into()), "--anthropic-port");
    }
    if let Some(backend) = &options.default_backend {
        loader = loader.set("default_backend", backend.as_str(), "--default-backend");
    }
    if let Some(route) = &options.static_route {
        loader = loader.set("static_route", route.as_str(), "--static-route");
    }
    if let Some(model) = &options.force_model {
        loader = loader.set("force_model", model.as_str(), "--force-model");
    }
    if !options.model_aliases.is_empty() {
        let mut list = Vec::new();
        for alias in &options.model_aliases {
            // Split at the last '=': patterns may hold one, replacements rarely do.
            let (pattern, replacement) = alias.rsplit_once('=').unwrap_or((alias.as_str(), ""));
            let mut table = toml::Table::new();
            table.insert("pattern".into(), pattern.into());
            table.insert("replacement".into(), replacement.into());
            list.push(toml::Value::Table(table));
        }
        loader = loader.set("model_aliases", toml::Value::Array(list), "--model-alias");
    }
    if options.enable_edit_precision {
        loader = loader.set("edit_precision.enabled", true, "--enable-edit-precision");
    }
    if options.disable_edit_precision {
        loader = loader.set("edit_precision.enabled", false, "--disable-edit-precision");
    }
    if let Some(t) = options.edit_precision_temperature {
        loader = loader.set(
            "edit_precision.temperature",
            t,
            "--edit-precision-temperature",
        );
    }
    if let Some(p) = options.edit_precision_min_top_p {
        loader = loader.set("edit_precision.min_top_p", p, "--edit-precision-min-top-p");
    }
    if options.edit_precision_override_top_p {
        loader = loader.set(
            "edit_precision.override_top_p",
            true,
            "--edit-precision-override-top-p",
        );
    }
    if let Some(regex) = &options.edit_precision_exclude_agents {
        loader = loader.set(
            "edit_precision.exclude_agents_regex",
            regex.as_str(),
            "--edit-precision-exclude-agents",
        );
    }
    if let Some(file) = &options.capture_file {
        loader = loader.set("capture.file", file.as_str(), "--capture-file");
    }
    if let Some(file) = &options.capture_db {
        loader = loader.set("capture.db", file.as_str(), "--capture-db");
    }
    for (key, value, flag) in [
        (
            "buffer_size",
            options.capture_buffer_size,
            "--capture-buffer-size",
        ),
        (
            "max_entries_per_flush",
            options.capture_max_entries_per_flush,
            "--capture-max-entries-per-flush",
        ),
        (
            "max_bytes",
            options.capture_max_bytes,
            "--capture-max-bytes",
        ),
        (
            "max_files",
            options.capture_max_files,
            "--capture-max-files",
        ),
        (
            "total_max_bytes",
            options.capture_total_max_bytes,
            "--capture-total-max-bytes",
        ),
    ] {
        if let Some(value) = value {
            loader = loader.set(&format!("capture.{key}"), int(value), flag);
        }
    }
    if let Some(seconds) = options.capture_flush_interval {
        loader = loader.set(
            "capture.flush_interval",
            seconds,
            "--capture-flush-interval",
        );
    }
    let pp = "session.planning_phase";
    if options.enable_planning_phase {
        loader = loader.set(&format!("{pp}.enabled"), true, "--enable-planning-phase");
    }
    if let Some(model) = &options.planning_phase_strong_model {
        loader = loader.set(
            &format!("{pp}.strong_model"),
            model.as_str(),
            "--planning-phase-strong-model",
        );
    }
    if let Some(n) = options.planning_phase_max_turns {
        loader = loader.set(
            &format!("{pp}.max_turns"),
            int(n),
            "--planning-phase-max-turns",
        );
    }
    if let Some(n) = options.planning_phase_max_file_writes {
        loader = loader.set(
            &format!("{pp}.max_file_writes"),
            int(n),
            "--planning-phase-max-file-writes",
        );
    }
    if let Some(t) = options.planning_phase_temperature {
        loader = loader.set(
            &format!("{pp}.overrides.temperature"),
            t,
            "--planning-phase-temperature",
        );
    }
    if let Some(p) = options.planning_phase_top_p {
        loader = loader.set(
            &format!("{pp}.overrides.top_p"),
            p,
            "--planning-phase-top-p",
        );
    }
    if let Some(effort) = &options.planning_phase_reasoning_effort {
        loader = loader.set(
            &format!("{pp}.overrides.reasoning_effort"),
            effort.as_str(),
            "--planning-phase-reasoning-effort",
        );
    }
    if let Some(n) = options.planning_phase_thinking_budget {
        loader = loader.set(
            &format!("{pp}.overrides.thinking_budget"),
            int(n),
            "--planning-phase-thinking-budget",
        );
    }
    if options.strict_command_detection {
        loader = loader.set(
            "strict_command_detection",
            true,
            "--strict-command-detection",
        );
    }
    if let Some(prefix) = &options.command_prefix {
        loader = loader.set("command_prefix", prefix.as_str(), "--command-prefix");
    }
    if options.disable_auth {
        loader = loader.set("auth.disable_auth", true, "--disable-auth");
    }
    if let Some(level) = &options.log_level {
        loader = loader.set("logging.level", level.as_str(), "--log-level");
    }
    if let Some(format) = &options.log_format {
        loader = loader.set("logging.format", format.as_str(), "--log-format");
    }
    if !options.trusted_ips.is_empty() {
        let list: Vec<toml::Value> = options
            .trusted_ips
            .iter()
            .map(|s| s.as_str().into())
            .collect();
        loader = loader.set("auth.trusted_ips", toml::Value::Array(list), "--trusted-ip");
    }
    for (key, list, flag) in [
        (
            "proxy.allowed_hosts",
            &options.allowed_hosts,
            "--allowed-host",
        ),
        (
            "proxy.allowed_origins",
            &options.allowed_origins,
            "--allowed-origin",
        ),
    ] {
        if !list.is_empty() {
            let list = list.iter().map(|s| toml::Value::from(s.as_str())).collect();
            loader = loader.set(key, toml::Value::Array(list), flag);
        }
    }
    if let Some(seconds) = options.header_read_timeout {
        loader = loader.set(
            "proxy.header_read_timeout_seconds",
            seconds,
            "--header-read-timeout",
        );
    }
    if let Some(seconds) = options.keep_alive_timeout {
        loader = loader.set(
            "proxy.keep_alive_timeout_seconds",
            seconds,
            "--keep-alive-timeout",
        );
    }
    if let Some(n) = options.max_connections {
        loader = loader.set("proxy.max_connections", int(n), "--max-connections");
    }
    if let Some(n) = options.max_concurrent_requests_per_ip {
        loader = loader.set(
            "proxy.max_concurrent_requests_per_ip",
            int(n),
            "--max-concurrent-requests-per-ip",
        );
    }
    if let Some(bytes) = options.max_body_bytes {
        loader = loader.set("proxy.max_body_bytes", int(bytes), "--max-body-bytes");
    }
    let bf = "auth.brute_force_protection";
    if options.enable_brute_force_protection {
        loader = loader.set(
            &format!("{bf}.enabled"),
            true,
            "--enable-brute-force-protection",
        );
    }
    if options.disable_brute_force_protection {
        loader = loader.set(
            &format!("{bf}.enabled"),
            false,
            "--disable-brute-force-protection",
        );
    }
    if let Some(n) = options.auth_max_failed_attempts {
        loader = loader.set(
            &format!("{bf}.max_failed_attempts"),
            int(n.into()),
            "--auth-max-failed-attempts",
        );
    }
    if let Some(s) = options.auth_brute_force_ttl {
        loader = loader.set(
            &format!("{bf}.ttl_seconds"),
            int(s),
            "--auth-brute-force-ttl",
        );
    }
    if let Some(s) = options.auth_brute_force_initial_block {
        loader = loader.set(
            &format!("{bf}.initial_block_seconds"),
            int(s),
            "--auth-brute-force-initial-block",
        );
    }
    if let Some(f) = options.auth_brute_force_multiplier {
        loader = loader.set(
            &format!("{bf}.block_multiplier"),
            f,
            "--auth-brute-force-multiplier",
        );
    }
    if let Some(s) = options.auth_brute_force_max_block {
        loader = loader.set(
            &format!("{bf}.max_block_seconds"),
            int(s),
            "--auth-brute-force-max-block",
        );
    }
    loader
}

fn init_logging(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(&config.log_level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal; log files and pipes get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(loaded: Loaded, loader: ConfigLoader) -> anyhow::Result<ExitCode> {
    let config = loaded.config;
    init_logging(&config);
    for note in &loaded.notes {
        tracing::info!("{note}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_until_stopped(config, loader))?;
    Ok(ExitCode::SUCCESS)
}

/// Serves `config`; when settings are saved from the admin API, stops the listeners (letting
/// running requests finish) and serves the new config. A new config that cannot start
/// (its port is taken, its store cannot open) is logged and the previous one serves again.
async fn serve_until_stopped(config: Config, loader: ConfigLoader) -> anyhow::Result<()> {
    let secrets = EnvSecrets::from_process();
    let settings = Arc::new(SettingsSource::new(loader));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        llmux::server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut config = config;
    let mut previous: Option<Config> = None;
    loop {
        let started = match start(&config, &secrets).await {
            Ok(started) => started,
            Err(err) => match previous.take() {
                Some(last_good) => {
                    tracing::error!("the changed settings cannot start: {err:#}; going back");
                    config = last_good;
                    continue;
                }
                None => return Err(err),
            },
        };
        let (engine, listeners) = started;
        engine.attach_settings(settings.clone());
        let mut reload = settings.reloads();
        reload.mark_unchanged();
        let mut stop = stop_rx.clone();
        let stopping = async move {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => {}
                _ = reload.changed() => {}
            }
        };
        listeners
            .serve(
                config.connections.clone(),
                stopping,
                config.shutdown_timeout,
            )
            .await
            .context("server failed")?;
        let closing = engine.clone();
        tokio::task::spawn_blocking(move || closing.close())
            .await
            .context("closing the captures")?;
        if *stop_rx.borrow() {
            break;
        }
        match settings.load() {
            Ok(loaded) => {
                tracing::info!("settings changed: restarting the listeners");
                previous = Some(std::mem::replace(&mut config, loaded.config));
            }
            Err(err) => {
                tracing::error!("settings changed but do not load, keeping the last:\n{err}")
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Builds the engine and binds its listeners.
async fn start(
    config: &Config,
    secrets: &EnvSecrets,
) -> anyhow::Result<(Engine, llmux::server::Listeners)> {
    let engine = Engine::new(config.clone(), secrets).context("cannot start the engine")?;
    let listeners = llmux::server::Listeners::bind(&engine).map_err(|err| match err {
        llmux::server::BindError::Main { .. } => {
            anyhow::anyhow!("{err} (is another llmux running? choose another port)")
        }
        other => anyhow::Error::new(other),
    })?;
    describe_startup(&engine, listeners.main, listeners.anthropic);
    Ok((engine, listeners))
}

fn describe_startup(
    engine: &Engine,
    local: std::net::SocketAddr,
    anthropic: Option<std::net::SocketAddr>,
) {
    let config = engine.config();
    let auth = if engine.auth().enabled() {
        "on"
    } else {
        "off (loopback only)"
    };
    tracing::info!(
        "llmux {} listening on http://{local} (OpenAI: http://{local}/v1; default back-end: {}; auth: {auth})",
        env!("CARGO_PKG_VERSION"),
        config.default_backend
    );
    match anthropic {
        Some(addr) => tracing::info!(
            "Anthropic clients: ANTHROPIC_BASE_URL=http://{addr} (also http://{local}/anthropic)"
        ),
        None => tracing::info!("Anthropic clients: ANTHROPIC_BASE_URL=http://{local}/anthropic"),
    }
    if let Ok(backend) = engine.routes().backend(&config.default_backend) {
        let c = backend.config();
        if c.kind.requires_key() && backend.key_name().is_none() {
            tracing::warn!(
                "default back-end '{}' has no API key: set {} (or try the keyless mock: model \"mock:mock-model\")",
                c.id,
                c.api_key_env.as_deref().unwrap_or("its key variable")
            );
        }
    }
}
