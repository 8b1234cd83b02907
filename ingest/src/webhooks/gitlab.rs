//! GitLab's Deployment Hook (CONTRACT.md section 9). Every other event is ignored.

use serde_json::Value;

use super::commits::{Lookup, Tool};
use super::names::Names;
use super::payload::{parse_gitlab_time, quote, Payload, PayloadError};
use super::{Commit, Draft, Mapped};

/// What the `X-Gitlab-Event` named and the payload holds, as events.
pub fn map(event: &str, body: &Value, names: &Names) -> Result<Mapped, PayloadError> {
    if event != "Deployment Hook" {
        return Ok(Mapped::Ignored(format!(
            "GitLab event `{}` is not one dora uses (`Deployment Hook`)",
            quote(event)
        )));
    }
    let p = Payload::new("GitLab", body);
    let status = p.str("status")?;
    let succeeded = match status {
        "success" => true,
        "failed" => false,
        other => {
            return Ok(Mapped::Ignored(format!(
                "deployment status `{}` is not an outcome (`success`, `failed`)",
                quote(other)
            )))
        }
    };
    let id = format!("gitlab-deployment-{}-{status}", p.id("deployment_id")?);
    let sha = match p.opt_str("commit_url")?.and_then(full_sha) {
        Some(sha) => sha,
        None => p.str("short_sha")?,
    };
    let changed = p.str("status_changed_at")?;
    let occurred_at = parse_gitlab_time(changed).ok_or_else(|| {
        p.bad_time(
            "status_changed_at",
            changed,
            "a time such as `2021-04-28 21:50:00 +0200`",
        )
    })?;
    let project = p.id("project.id")?;
    let service = names.service(
        p.str("project.path_with_namespace")?,
        p.str("project.name")?,
    );
    Ok(Mapped::Events(vec![Draft::deploy(
        id,
        service,
        names.environment(p.opt_str("environment")?),
        sha,
        succeeded,
        occurred_at,
        Commit::Lookup(Lookup {
            tool: Tool::GitLab,
            project,
            sha: sha.to_owned(),
        }),
    )]))
}

/// The 40-hex sha a commit URL ends with (`.../-/commit/<sha>`).
fn full_sha(url: &str) -> Option<&str> {
    let tail = url.trim_end_matches('/').rsplit('/').next()?;
    (tail.len() == 40 && tail.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha_is_the_end_of_the_commit_url_when_it_is_whole() {
        let sha = "279484c09fbe69ededfced8c1bb6e6d24616b468";
        assert_eq!(
            full_sha(&format!("http://10.126.0.2:3000/root/x/-/commit/{sha}")),
            Some(sha)
        );
        assert_eq!(full_sha(&format!("https://g/x/-/commit/{sha}/")), Some(sha));
        assert_eq!(full_sha("https://g/x/-/commit/279484c0"), None);
        assert_eq!(full_sha(&format!("https://g/x/-/commit/{sha}x")), None);
        assert_eq!(full_sha(""), None);
    }
}
