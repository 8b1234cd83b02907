//! Running the real `dora-emit` binary from the tests, and the git checkouts it reads.
//!
//! The binary is built on first use (see [`crate::binary`]); `DORA_EMIT_BIN` overrides
//! that, for a binary built elsewhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use tokio::process::Command;

/// The `dora-emit` executable, built on first use.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| crate::binary::built("dora-emit"))
}

/// A `dora-emit` command with a clean environment: nothing of the shell or CI the tests
/// run in leaks into it (a `GITHUB_ACTIONS` there would change the ids), only `PATH`
/// (for git) and what the test sets.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What a finished `dora-emit` said.
#[derive(Debug)]
pub struct Ran {
    /// The exit status; `None` if killed by a signal.
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `command` to the end.
pub async fn run(command: &mut Command) -> Ran {
    let output = command.output().await.expect("run dora-emit");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A temporary git repository with one commit, removed on drop.
#[derive(Debug)]
pub struct Checkout {
    /// Its directory.
    pub dir: PathBuf,
    /// HEAD.
    pub sha: String,
    /// HEAD's committer time.
    pub committed_at: chrono::DateTime<chrono::Utc>,
}

impl Checkout {
    /// `git init` and one commit, committed at `committed_at` (given with a +02:00
    /// offset, so the test sees it come back as UTC).
    pub fn new(committed_at: chrono::DateTime<chrono::Utc>) -> Checkout {
        let dir = std::env::temp_dir().join(format!("dora-emit-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create checkout dir");
        let offset = chrono::FixedOffset::east_opt(2 * 3600).expect("offset");
        let when = committed_at.with_timezone(&offset).to_rfc3339();
        let git = |args: &[&str]| {
            let output = std::process::Command::new("git")
                .args(args)
                .current_dir(&dir)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_AUTHOR_DATE", &when)
                .env("GIT_COMMITTER_DATE", &when)
                .output()
                .expect("run git");
            assert!(
                output.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        };
        git(&["init", "-q"]);
        std::fs::write(dir.join("app.txt"), "v1\n").expect("write file");
        git(&["add", "app.txt"]);
        git(&[
            "-c",
            "user.name=Dora Test",
            "-c",
            "user.email=dora@example.com",
            "commit",
            "-q",
            "-m",
            "one change",
        ]);
        let sha = git(&["rev-parse", "HEAD"]);
        Checkout {
            dir,
            sha,
            committed_at,
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
