//! GitHub's webhooks (CONTRACT.md section 9): `deployment_status`, and `workflow_run`
//! for the workflows named in `DORA_GITHUB_DEPLOY_WORKFLOWS`. Every other event is
//! ignored.

use serde_json::Value;

use super::commits::{Lookup, Tool};
use super::names::{NameMap, Names};
use super::payload::{quote, Payload, PayloadError};
use super::{Commit, Draft, Mapped};

/// What the `X-GitHub-Event` named and the payload holds, as events.
pub fn map(
    event: &str,
    body: &Value,
    workflows: &NameMap,
    names: &Names,
) -> Result<Mapped, PayloadError> {
    let p = Payload::new("GitHub", body);
    match event {
        "deployment_status" => deployment_status(p, names),
        "workflow_run" => workflow_run(p, workflows, names),
        "ping" => Ok(Mapped::Ignored(
            "ping: the webhook reaches dora; it uses `deployment_status` and `workflow_run` events"
                .to_owned(),
        )),
        other => Ok(Mapped::Ignored(format!(
            "GitHub event `{}` is not one dora uses (`deployment_status`, `workflow_run`)",
            quote(other)
        ))),
    }
}

/// The service of a repository's event: its `name`, mapped by its `full_name`.
fn service(p: Payload, names: &Names) -> Result<(String, String), PayloadError> {
    let full_name = p.str("repository.full_name")?;
    let name = p.str("repository.name")?;
    Ok((names.service(full_name, name), full_name.to_owned()))
}

fn deployment_status(p: Payload, names: &Names) -> Result<Mapped, PayloadError> {
    let state = p.str("deployment_status.state")?;
    let succeeded = match state {
        "success" => true,
        "failure" | "error" => false,
        other => {
            return Ok(Mapped::Ignored(format!(
                "deployment_status state `{}` is not an outcome (`success`, `failure`, `error`)",
                quote(other)
            )))
        }
    };
    let id = format!("github-deployment-status-{}", p.id("deployment_status.id")?);
    let sha = p.str("deployment.sha")?;
    let environment = match p.opt_str("deployment_status.environment")? {
        Some(env) => Some(env),
        None => p.opt_str("deployment.environment")?,
    };
    let occurred_at = match p.opt_time("deployment_status.updated_at")? {
        Some(at) => at,
        None => p.time("deployment_status.created_at")?,
    };
    let (service, full_name) = service(p, names)?;
    Ok(Mapped::Events(vec![Draft::deploy(
        id,
        service,
        names.environment(environment),
        sha,
        succeeded,
        occurred_at,
        Commit::Lookup(Lookup {
            tool: Tool::GitHub,
            project: full_name,
            sha: sha.to_owned(),
        }),
    )]))
}

fn workflow_run(p: Payload, workflows: &NameMap, names: &Names) -> Result<Mapped, PayloadError> {
    let action = p.str("action")?;
    if action != "completed" {
        return Ok(Mapped::Ignored(format!(
            "workflow_run `{}`: only a completed run is a deploy",
            quote(action)
        )));
    }
    let path = p.str("workflow_run.path")?;
    // A reusable workflow's path can carry the ref it ran at (`...yml@refs/heads/main`).
    let file = path.split('@').next().unwrap_or(path);
    let Some(environment) = workflows.get(path).or_else(|| workflows.get(file)) else {
        return Ok(Mapped::Ignored(format!(
            "workflow `{}` is not a deploy: it is not in DORA_GITHUB_DEPLOY_WORKFLOWS",
            quote(path)
        )));
    };
    let conclusion = p.opt_str("workflow_run.conclusion")?.unwrap_or("none");
    let succeeded = match conclusion {
        "success" => true,
        "failure" | "timed_out" => false,
        other => {
            return Ok(Mapped::Ignored(format!(
                "workflow_run conclusion `{}` is not a deploy outcome (`success`, `failure`, `timed_out`)",
                quote(other)
            )))
        }
    };
    let run = p.id("workflow_run.id")?;
    let attempt = match p.get("workflow_run.run_attempt") {
        None => "1".to_owned(),
        Some(_) => p.id("workflow_run.run_attempt")?,
    };
    let sha = p.str("workflow_run.head_sha")?;
    let occurred_at = p.time("workflow_run.updated_at")?;
    let commit = match p.opt_time("workflow_run.head_commit.timestamp")? {
        Some(at) => Commit::Known(at),
        None => Commit::None,
    };
    let (service, _) = service(p, names)?;
    Ok(Mapped::Events(vec![Draft::deploy(
        format!("github-workflow-run-{run}-{attempt}"),
        service,
        names.environment(Some(environment)),
        sha,
        succeeded,
        occurred_at,
        commit,
    )]))
}
