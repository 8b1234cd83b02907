//! Finding the workspace's executables, for the tests that run a real binary.
//!
//! `cargo test -p dora-system-tests` builds this package's targets only, not another
//! package's binaries, and artifact dependencies are not stable Cargo. So the first test
//! that needs one runs `cargo build --workspace --bins` (with `--release` when the tests
//! are a release build) and takes the paths Cargo reports for the executables in its
//! JSON messages: they are right whatever `CARGO_TARGET_DIR`, `--target` or profile is in
//! force, and building every run (a no-op when fresh) never tests a stale binary. All of
//! the workspace's binaries in one build, not one package at a time: a build of one
//! package resolves its dependencies' features on its own, and would compile most of the
//! tree again for each binary.
//!
//! `DORA_<NAME>_BIN` (`DORA_EMIT_BIN` for `dora-emit`) overrides all of it, for a binary
//! built elsewhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The workspace's executable `name` (`dora-ingest`, ...), built on first use, or the
/// path in `DORA_<NAME>_BIN` when that is set.
pub fn built(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(build)
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("cargo reported no {name} executable"))
}

/// `cargo build --workspace --bins`; every executable by name.
fn build() -> HashMap<String, PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace");
    let release = std::env::current_exe()
        .map(|exe| exe.components().any(|c| c.as_os_str() == "release"))
        .unwrap_or(false);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args(["build", "--workspace", "--bins"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit());
    if release {
        build.arg("--release");
    }
    // Cargo gives the test process the tests crate's CARGO_MANIFEST_DIR, CARGO_PKG_* and
    // so on. Build scripts (ring's) rerun when those change, so passing them on would
    // rebuild half the tree here, and again in the next plain cargo run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let from_test_run = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_CFG_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if from_test_run {
            build.env_remove(name.as_ref());
        }
    }
    let output = build.output().expect("run cargo build --workspace --bins");
    assert!(
        output.status.success(),
        "cargo build --workspace --bins failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            let path = PathBuf::from(m["executable"].as_str()?);
            Some((name, path))
        })
        .collect()
}
