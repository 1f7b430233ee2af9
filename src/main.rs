//! The `llmux` command line: `llmux [serve]`, `llmux config check`, `llmux config print`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use llmux::admin::settings::SettingsSource;
use llmux::config::{ConfigLoader, Loaded, LogFormat, default_config_path, keys};
use llmux::credentials::EnvSecrets;
use llmux::{Config, Engine};

/// mimalloc: allocating and freeing cost a request a quarter of its instructions with
/// glibc's allocator (bench/callgrind.sh); bench/results/allocator.md has what it changed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Browse a capture store (capture.sqlite) read-only in the inspector at /ui: a copy
    /// from another machine, or the store of an instance that is running. Serves as
    /// `serve` does, recording nothing.
    Inspect {
        /// The capture store file.
        file: PathBuf,
    },
    /// Point a coding agent at llmux: edits its own settings (kept otherwise, backed up
    /// first) and shows the diff. CLIENT: claude, codex or gemini.
    Connect {
        client: String,
        /// Put back what connect changed.
        #[arg(long)]
        undo: bool,
        /// Show the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the configuration; exits non-zero with every problem found.
    Check,
    /// Print the effective configuration with the source of each value (secrets masked).
    Print,
    /// Write a llm-interactive-proxy config (config.yaml and its back-end files) as llmux
    /// TOML, with comments saying where values came from; refuses what it cannot carry over.
    Import {
        /// The seed's config file (YAML) or any llmux config file.
        file: PathBuf,
        /// Write the TOML here instead of to stdout (an existing file is not overwritten).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// The options every command takes besides the settings' own flags (`config::keys`).
#[derive(Args)]
struct Options {
    /// Config file (TOML). Default: llmux.toml in the user config directory, if present.
    #[arg(long, global = true, env = "LLMUX_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The command line: the derived commands, plus one flag per flag of the settings table.
/// Flags override the environment, which overrides the config file.
fn command_line() -> clap::Command {
    let mut command = Cli::command();
    for setting in keys::SETTINGS {
        for flag in setting.flags {
            command = command.arg(flag_arg(setting, flag));
        }
    }
    command
}

fn flag_arg(setting: &keys::Setting, flag: &keys::Flag) -> clap::Arg {
    let arg = clap::Arg::new(flag.long()).long(flag.long()).global(true);
    match *flag {
        keys::Flag::Switch { value, .. } => {
            let help = if value {
                setting.long_help()
            } else {
                format!("Turn it off [{} = false]", setting.key)
            };
            // The switches of one setting contradict each other.
            let others = setting
                .flags
                .iter()
                .map(keys::Flag::long)
                .filter(|long| *long != flag.long());
            arg.action(ArgAction::SetTrue)
                .help(help)
                .conflicts_with_all(others)
        }
        keys::Flag::Value { value_name, .. } => {
            let arg = arg.value_name(value_name).help(setting.long_help());
            match setting.kind {
                keys::Kind::Integer => arg.value_parser(clap::value_parser!(u64)),
                keys::Kind::Number => arg.value_parser(clap::value_parser!(f64)),
                keys::Kind::Bool => arg.value_parser(clap::value_parser!(bool)),
                keys::Kind::Text => arg,
                keys::Kind::List | keys::Kind::Aliases => arg.action(ArgAction::Append),
            }
        }
    }
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
    let matches = command_line().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let loader = config_loader(&cli.options, &matches);
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
        Command::Config {
            action: ConfigAction::Import { file, out },
        } => import(&file, out.as_deref()),
        Command::Connect {
            client,
            undo,
            dry_run,
        } => match loaded {
            Ok(loaded) => connect(&loaded.config, &client, undo, dry_run),
            Err(err) => Ok(report_invalid(&err)),
        },
        Command::Serve => match loaded {
            Ok(loaded) => serve(loaded, loader),
            Err(err) => Ok(report_invalid(&err)),
        },
        Command::Inspect { file } => {
            let file = std::fs::canonicalize(&file).unwrap_or(file);
            // Set on the loader, so saved settings keep it too.
            let loader = loader
                .set("capture.db", file.display().to_string(), "llmux inspect")
                .set("capture.db_read_only", true, "llmux inspect")
                .set("capture.file", "", "llmux inspect");
            match loader.clone().load() {
                Ok(loaded) => {
                    eprintln!(
                        "llmux: inspecting {} read-only (nothing is recorded in it)",
                        file.display()
                    );
                    serve(loaded, loader)
                }
                Err(err) => Ok(report_invalid(&err)),
            }
        }
    }
}

/// `llmux connect CLIENT [--undo] [--dry-run]`.
fn connect(config: &Config, client: &str, undo: bool, dry_run: bool) -> anyhow::Result<ExitCode> {
    use llmux::connect::{self, Client};
    let Some(client) = Client::parse(client) else {
        eprintln!("llmux: unknown client '{client}'; expected claude, codex or gemini");
        return Ok(ExitCode::from(2));
    };
    let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_owned()) else {
        eprintln!(
            "llmux: no home directory to find {}'s settings in",
            client.name()
        );
        return Ok(ExitCode::from(2));
    };
    let target = connect::Target::for_config(config);
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let planned = if undo {
        connect::plan_undo(client, &home, &env)
    } else {
        connect::plan_connect(client, &home, &env, &target)
    };
    let changes = match planned {
        Ok(changes) => changes,
        Err(why) => {
            eprintln!("llmux: {why}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = std::io::stdout().lock();
    for change in changes.iter().filter(|c| !c.is_noop()) {
        out.write_all(change.diff().as_bytes())?;
    }
    if changes.iter().all(connect::Change::is_noop) {
        writeln!(
            out,
            "{} already {}.",
            client.name(),
            if undo { "undone" } else { "points at llmux" }
        )?;
    }
    if dry_run {
        writeln!(out, "(dry run: nothing was changed)")?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(why) = connect::apply(&changes, undo) {
        eprintln!("llmux: {why}");
        return Ok(ExitCode::from(1));
    }
    if undo {
        writeln!(out, "{} no longer uses llmux.", client.name())?;
    } else {
        writeln!(
            out,
            "{} now uses llmux at {}.",
            client.name(),
            target.base_url
        )?;
        if client == Client::Codex && target.proxy_key.is_some() {
            writeln!(
                out,
                "Codex reads llmux's key from {}: export it where codex runs.",
                connect::CODEX_KEY_VARIABLE
            )?;
        }
        writeln!(out, "Undo with: llmux connect {} --undo", client.id())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `llmux config import FILE [--out TOML]`.
fn import(file: &std::path::Path, out: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let text = match llmux::config::import(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("llmux: cannot import {}:\n{err}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    match out {
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
        Some(out) => {
            // create_new: an existing file (the user's llmux.toml) is never overwritten.
            let mut target = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            target.write_all(text.as_bytes())?;
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report_invalid(err: &llmux::config::ConfigError) -> ExitCode {
    eprintln!("llmux: invalid configuration:\n{err}");
    ExitCode::from(2)
}

fn check(loaded: Result<Loaded, llmux::config::ConfigError>) -> ExitCode {
    match loaded {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
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
fn config_loader(options: &Options, matches: &clap::ArgMatches) -> ConfigLoader {
    let mut loader = ConfigLoader::new();
    match &options.config {
        Some(path) => loader = loader.file(path, true),
        None => {
            if let Some(path) = default_config_path() {
                loader = loader.file(path, false);
            }
        }
    }
    for setting in keys::SETTINGS {
        for flag in setting.flags {
            if let Some(value) = flag_value(setting, flag, matches) {
                loader = loader.set(setting.key, value, &format!("--{}", flag.long()));
            }
        }
    }
    loader
}

/// The value `flag` gives its setting, when it was given.
fn flag_value(
    setting: &keys::Setting,
    flag: &keys::Flag,
    matches: &clap::ArgMatches,
) -> Option<toml::Value> {
    let id = flag.long();
    if let keys::Flag::Switch { value, .. } = *flag {
        return matches.get_flag(id).then_some(toml::Value::Boolean(value));
    }
    let strings = || {
        matches
            .get_many::<String>(id)
            .map(|values| values.cloned().collect::<Vec<_>>())
            .filter(|values| !values.is_empty())
    };
    Some(match setting.kind {
        keys::Kind::Integer => {
            let n = *matches.get_one::<u64>(id)?;
            toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
        }
        keys::Kind::Number => toml::Value::Float(*matches.get_one::<f64>(id)?),
        keys::Kind::Bool => toml::Value::Boolean(*matches.get_one::<bool>(id)?),
        keys::Kind::Text => toml::Value::String(matches.get_one::<String>(id)?.clone()),
        keys::Kind::List => toml::Value::Array(strings()?.into_iter().map(Into::into).collect()),
        keys::Kind::Aliases => toml::Value::Array(strings()?.iter().map(|a| alias(a)).collect()),
    })
}

/// `PATTERN=REPLACEMENT` as an alias table, split at the last '=': patterns may hold one,
/// replacements rarely do.
fn alias(text: &str) -> toml::Value {
    let (pattern, replacement) = text.rsplit_once('=').unwrap_or((text, ""));
    let mut table = toml::Table::new();
    table.insert("pattern".into(), pattern.into());
    table.insert("replacement".into(), replacement.into());
    toml::Value::Table(table)
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
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
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

/// Serves `config`, applying settings saved from the admin API: a change the running
/// listeners can take (back-ends, keys, routes, stages, limits, ...) is served by a new
/// engine from the next request on, while running requests and streams finish on the old
/// one; a change of address, port, connection or capture-file settings stops the listeners
/// (letting running requests finish) and serves the new config. A new config that cannot
/// start (its port is taken, its store cannot open) is logged and the previous one serves
/// again.
async fn serve_until_stopped(config: Config, loader: ConfigLoader) -> anyhow::Result<()> {
    let secrets = Arc::new(EnvSecrets::from_process());
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
        let (mut engine, listeners) = started;
        engine.attach_settings(settings.clone());
        let switch = listeners.switch();
        let mut reload = settings.reloads();
        reload.mark_unchanged();
        let (restart_tx, restart_rx) = tokio::sync::oneshot::channel::<()>();
        let mut restart_tx = Some(restart_tx);
        let mut stop = stop_rx.clone();
        let stopping = async move {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => {}
                _ = restart_rx => {}
            }
        };
        let serving = listeners.serve(
            config.connections.clone(),
            stopping,
            config.shutdown_timeout,
        );
        tokio::pin!(serving);
        let mut next = None;
        loop {
            tokio::select! {
                served = &mut serving => {
                    served.context("server failed")?;
                    break;
                }
                Ok(()) = reload.changed(), if restart_tx.is_some() => {
                    let loaded = match settings.load() {
                        Ok(loaded) => loaded.config,
                        Err(err) => {
                            tracing::error!("settings changed but do not load, keeping the last:\n{err}");
                            continue;
                        }
                    };
                    if let Some(what) = engine.restart_needed_for(&loaded) {
                        tracing::info!("settings changed ({what}): restarting the listeners");
                        next = Some(loaded);
                        if let Some(restart) = restart_tx.take() {
                            let _ = restart.send(());
                        }
                        continue;
                    }
                    // Off the async threads: building may wait on the capture writers.
                    let (running, next_config, env) =
                        (engine.clone(), loaded.clone(), secrets.clone());
                    let built = tokio::task::spawn_blocking(move || {
                        running.successor(next_config, env.as_ref())
                    })
                    .await
                    .map_err(|e| llmux::Error::internal(e.to_string()))
                    .and_then(|built| built);
                    match built {
                        Ok(successor) => {
                            switch.serve(&successor);
                            engine = successor;
                            config = loaded;
                            tracing::info!(
                                "settings applied without a restart (default back-end: {}); running requests finish on the previous ones",
                                config.default_backend
                            );
                        }
                        Err(err) => tracing::error!(
                            "the changed settings cannot be served: {err:#}; keeping the last"
                        ),
                    }
                }
            }
        }
        let closing = engine.clone();
        tokio::task::spawn_blocking(move || closing.close())
            .await
            .context("closing the captures")?;
        if *stop_rx.borrow() {
            break;
        }
        if let Some(next) = next {
            // Saves made while the listeners drained are in the file too: load it again.
            let latest = match settings.load() {
                Ok(loaded) => loaded.config,
                Err(err) => {
                    tracing::error!(
                        "settings changed but do not load, using the last that did:\n{err}"
                    );
                    next
                }
            };
            previous = Some(std::mem::replace(&mut config, latest));
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
