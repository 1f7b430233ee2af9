//! scripts/prune-target on a build directory laid out as cargo lays one out: which builds of
//! the workspace's own targets go, which stay, and that nothing goes while a build holds the
//! directory's lock. (A full disk once failed CI; the script runs before every test run.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);

/// A build directory with a `debug/deps` and a `debug/incremental`.
struct Target {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Target {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("debug/deps")).unwrap();
        fs::create_dir_all(root.join("debug/incremental")).unwrap();
        Self { _dir: dir, root }
    }

    /// Creates `debug/<path>`, last written `age` ago.
    fn file(&self, path: &str, age: Duration) {
        let path = self.root.join("debug").join(path);
        let file = File::create(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    fn has(&self, path: &str) -> bool {
        self.root.join("debug").join(path).exists()
    }

    /// Runs the script with `KEEP` builds kept and `recent_hours`; returns its output.
    fn prune(&self, keep: u32, recent_hours: u32) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prune-target");
        let out = Command::new("bash")
            .arg(script)
            .env("CARGO_TARGET_DIR", &self.root)
            .env("KEEP", keep.to_string())
            .env("RECENT_HOURS", recent_hours.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The files of one build of `llmux` (its library) with hash `n`, all `age` old.
fn llmux_build(target: &Target, n: u8, age: Duration) -> [String; 3] {
    let files = [
        format!("deps/libllmux-{n:016x}.rlib"),
        format!("deps/libllmux-{n:016x}.rmeta"),
        format!("deps/llmux-{n:016x}.d"),
    ];
    for file in &files {
        target.file(file, age);
    }
    files
}

#[test]
fn whole_builds_past_the_newest_go_and_other_crates_stay() {
    let target = Target::new();
    let builds: Vec<[String; 3]> = (1..=4)
        .map(|n| llmux_build(&target, n, HOUR * u32::from(10 - n)))
        .collect();
    // The oldest build was partly rebuilt an hour ago: its newest file ranks it.
    target.file(&format!("deps/libllmux-{:016x}.rmeta", 1), HOUR);
    // A test target of the workspace, and a third-party crate in four variants.
    for n in 1..=4u8 {
        target.file(
            &format!("deps/capture_store-{n:016x}"),
            HOUR * u32::from(10 - n),
        );
        target.file(
            &format!("deps/libtokio-{n:016x}.rlib"),
            HOUR * u32::from(10 - n),
        );
    }

    let out = target.prune(2, 0);
    assert!(out.contains("prune-target:"), "{out}");

    for (n, files) in builds.iter().enumerate() {
        let kept = matches!(n + 1, 1 | 4);
        for file in files {
            assert_eq!(
                target.has(file),
                kept,
                "{file}: every file of a build goes or stays"
            );
        }
    }
    for n in 1..=4u8 {
        let test_binary = format!("deps/capture_store-{n:016x}");
        assert_eq!(target.has(&test_binary), n >= 3, "{test_binary}");
        let tokio = format!("deps/libtokio-{n:016x}.rlib");
        assert!(
            target.has(&tokio),
            "{tokio}: other crates are left to the age rule"
        );
    }
}

#[test]
fn recent_builds_stay_and_anything_older_than_two_days_goes() {
    let target = Target::new();
    let recent: Vec<[String; 3]> = (1..=3).map(|n| llmux_build(&target, n, HOUR)).collect();
    target.file("deps/libtokio-00000000000000aa.rlib", HOUR * 49);
    target.file("deps/libtokio-00000000000000bb.rlib", HOUR * 47);
    fs::create_dir(target.root.join("debug/incremental/llmux-2x8uf6mj1l9z8")).unwrap();
    target.file("incremental/llmux-1abcdefghijk0", HOUR * 50);

    target.prune(1, 6);

    for file in recent.iter().flatten() {
        assert!(target.has(file), "{file}: built within the last six hours");
    }
    assert!(!target.has("deps/libtokio-00000000000000aa.rlib"));
    assert!(target.has("deps/libtokio-00000000000000bb.rlib"));
    assert!(!target.has("incremental/llmux-1abcdefghijk0"));
    assert!(target.has("incremental/llmux-2x8uf6mj1l9z8"));
}

#[test]
fn nothing_goes_while_a_build_holds_the_lock() {
    let target = Target::new();
    let old = llmux_build(&target, 1, HOUR * 72);
    let lock = File::create(target.root.join("debug/.cargo-lock")).unwrap();
    lock.lock().unwrap();

    let out = target.prune(0, 0);
    assert!(out.contains("not pruned"), "{out}");
    for file in &old {
        assert!(target.has(file), "{file}");
    }

    lock.unlock().unwrap();
    target.prune(0, 0);
    for file in &old {
        assert!(!target.has(file), "{file}: pruned once the lock is free");
    }
}
