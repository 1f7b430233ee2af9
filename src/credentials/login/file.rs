//! Reading and writing the credential files the official CLIs keep.
//!
//! The CLIs write in place (Codex truncates, then writes), so a read can land on a
//! half-written file: a parse failure is retried a few times before it counts. llmux's own
//! writes go to a temporary file beside the original and are renamed over it, with the
//! original's permissions, so a CLI reading at the same moment sees the old file or the
//! new one, never a mix.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How often a file that does not parse is read again before the failure counts.
const PARSE_RETRIES: u32 = 8;
const PARSE_RETRY_DELAY: Duration = Duration::from_millis(40);

/// Why a credential file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// There is no file: the user never logged in, or logged out.
    Missing,
    /// It exists but could not be read (permissions, a directory, ...).
    Unreadable(String),
    /// It stayed unparseable over every retry.
    NotJson(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("the file does not exist"),
            ReadError::Unreadable(why) => write!(f, "the file cannot be read: {why}"),
            ReadError::NotJson(why) => write!(f, "the file is not valid JSON: {why}"),
        }
    }
}

/// Reads `path` as a JSON object, retrying while it does not parse (a CLI may be halfway
/// through writing it).
pub async fn read_json(path: &Path) -> Result<Value, ReadError> {
    let mut attempt = 0;
    loop {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReadError::Missing);
            }
            Err(err) => return Err(ReadError::Unreadable(err.to_string())),
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) if value.is_object() => return Ok(value),
            Ok(_) if attempt >= PARSE_RETRIES => {
                return Err(ReadError::NotJson("not a JSON object".into()));
            }
            Err(err) if attempt >= PARSE_RETRIES => {
                // The parser's message names a line and column, never file content.
                return Err(ReadError::NotJson(err.to_string()));
            }
            _ => {}
        }
        attempt += 1;
        tokio::time::sleep(PARSE_RETRY_DELAY).await;
    }
}

/// Replaces `path` with `value` (pretty-printed, as the CLIs write it): written beside it,
/// given the original's permissions (0600 when there was none), then renamed over it.
pub async fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    let path = path.to_owned();
    let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    text.push(b'\n');
    tokio::task::spawn_blocking(move || write_atomically(&path, &text))
        .await
        .map_err(std::io::Error::other)?
}

/// Replaces `path` with `bytes`: written to a temporary file beside it (named by process
/// and a counter, so two writers in one process never share one), given the original's
/// permissions (0600 when there was none), synced, then renamed over it. A symbolic link
/// (a dotfile manager's) is followed: its target is replaced and the link kept.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            // A link whose target does not exist yet is written at its target, as
            // `fs::write` through the link would.
            resolved = std::fs::canonicalize(path).or_else(|_| {
                let target = std::fs::read_link(path)?;
                Ok::<_, std::io::Error>(match path.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                })
            })?;
            resolved.as_path()
        }
        _ => path,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".into());
    let serial = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!(".{name}.llmux-{}-{serial}.tmp", std::process::id()));
    let permissions = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let result = (|| {
        // Never through something already at the temporary name (a planted link).
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        match permissions {
            Some(permissions) => file.set_permissions(permissions)?,
            None => restrict_to_owner(&file)?,
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(unix)]
fn restrict_to_owner(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// A lock file taken the way Qwen Code takes its own (`sharedTokenManager.ts`): created
/// exclusively with the holder's pid in it, waited for with a growing pause (100 ms up to
/// 2 s, 20 tries), and taken over when older than 10 s (its holder died).
///
/// While llmux holds it (a token call may take longer than 10 s) its time is renewed
/// every few seconds, so Qwen Code does not take it over as stale. When dropped it is
/// removed, unless it is no longer llmux's (someone took it over).
pub struct FileLock {
    path: std::path::PathBuf,
    keeper: tokio::task::JoinHandle<()>,
}

const LOCK_STALE: Duration = Duration::from_secs(10);
const LOCK_TRIES: u32 = 20;
const LOCK_RENEWAL: Duration = Duration::from_secs(3);

impl FileLock {
    pub async fn acquire(path: std::path::PathBuf) -> Result<Self, String> {
        Self::acquire_renewed_every(path, LOCK_RENEWAL).await
    }

    async fn acquire_renewed_every(
        path: std::path::PathBuf,
        renewal: Duration,
    ) -> Result<Self, String> {
        let mut pause = Duration::from_millis(100);
        for _ in 0..LOCK_TRIES {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    let keeper = tokio::spawn(renew_while_ours(path.clone(), renewal));
                    return Ok(Self { path, keeper });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|at| at.elapsed().ok());
                    if age.is_some_and(|age| age > LOCK_STALE) {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                }
                Err(err) => return Err(format!("cannot take the lock {}: {err}", path.display())),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        Err(format!(
            "another process holds the lock {} (is the CLI refreshing this login?)",
            path.display()
        ))
    }
}

fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|holder| holder.trim() == std::process::id().to_string())
}

/// Keeps the lock's modification time fresh while it holds llmux's pid.
async fn renew_while_ours(path: std::path::PathBuf, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if !is_ours(&path) {
            return;
        }
        let renewed = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()));
        if renewed.is_err() {
            return;
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        self.keeper.abort();
        if is_ours(&self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rewrite_keeps_the_mode_and_a_missing_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        assert_eq!(read_json(&path).await, Err(ReadError::Missing));
        std::fs::write(&path, r#"{"a": 1}"#).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        write_json(&path, &serde_json::json!({"a": 2, "b": "kept"}))
            .await
            .unwrap();
        assert_eq!(read_json(&path).await.unwrap()["b"], "kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640);
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[tokio::test]
    async fn a_lock_is_waited_for_taken_over_when_stale_and_removed_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth_creds.lock");
        // Held by someone else for 300 ms.
        std::fs::write(&path, "other").unwrap();
        let release = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::remove_file(&path).unwrap();
            })
        };
        let started = std::time::Instant::now();
        let lock = FileLock::acquire(path.clone()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(290));
        release.await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!path.exists());
        // Left behind by a process that died a minute ago: taken over at once.
        let file = std::fs::File::create(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let started = std::time::Instant::now();
        let _lock = FileLock::acquire(path.clone()).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_held_lock_stays_fresh_and_one_taken_over_is_left_to_its_new_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth_creds.lock");
        let lock = FileLock::acquire_renewed_every(path.clone(), Duration::from_millis(40))
            .await
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let age = std::fs::metadata(&path)
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap();
        assert!(age < LOCK_STALE, "renewed while held: {age:?} old");
        // Another process decided it was stale and took it: dropping ours leaves theirs.
        std::fs::write(&path, "4242").unwrap();
        drop(lock);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242");
    }

    #[tokio::test]
    async fn a_half_written_file_is_read_once_it_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, r#"{"tokens": {"access_tok"#).unwrap();
        let finisher = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                std::fs::write(&path, r#"{"tokens": {"access_token": "x"}}"#).unwrap();
            })
        };
        let value = read_json(&path).await.unwrap();
        assert_eq!(value["tokens"]["access_token"], "x");
        finisher.await.unwrap();
        std::fs::write(&path, "{ never finished").unwrap();
        assert!(matches!(read_json(&path).await, Err(ReadError::NotJson(_))));
    }
}
