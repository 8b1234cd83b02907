//! Defaults from the git checkout the command runs in.

use std::process::Command;

use crate::error::{Error, Result};

/// `git rev-parse --verify HEAD` in the working directory; a usage error (exit 2) when
/// there is no checkout, since the deploy would otherwise name no change.
pub fn head_sha() -> Result<String> {
    git(&["rev-parse", "--verify", "HEAD"]).map_err(|why| {
        Error::Usage(format!(
            "no --sha given and no git checkout to take HEAD from ({why}); run in the checkout that was deployed or pass --sha"
        ))
    })
}

/// The committer time of `sha` (RFC 3339, `git show -s --format=%cI`), or `None` when
/// the checkout does not have that commit (a shallow clone, another repository).
pub fn commit_time(sha: &str) -> Option<String> {
    git(&[
        "show",
        "-s",
        "--format=%cI",
        &format!("{sha}^{{commit}}"),
        "--",
    ])
    .ok()
}

fn git(args: &[&str]) -> std::result::Result<String, String> {
    let output = Command::new("git")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if text.is_empty() {
            Err(format!("git {} printed nothing", args.join(" ")))
        } else {
            Ok(text)
        }
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "git {}: {}",
            args.join(" "),
            stderr.lines().next().unwrap_or("failed").trim()
        ))
    }
}
