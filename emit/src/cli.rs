//! The command line (CONTRACT.md section 7). The token is deliberately not here: flags
//! end up in CI logs, so `DORA_TOKEN` is read from the environment only.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dora_event::Kind;

const ABOUT: &str = "Send one lifecycle event to dora from a CI job or an incident tool.";

const AFTER_HELP: &str = "\
Examples:
  dora-emit deploy --service checkout --outcome \"$JOB_STATUS\"
  dora-emit rollback --service checkout --sha 9f2c1e7
  dora-emit incident-opened --service checkout --ref INC-123
  dora-emit incident-closed --service checkout --ref INC-123

Environment:
  DORA_TOKEN    the gateway token (required over HTTP). Read from the environment only,
                never a flag, and never printed.

The id: --id, else derived from the CI run, so that a retried step, or a retried HTTP
call, is one event:
  GitHub Actions (GITHUB_ACTIONS=true): GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT, GITHUB_JOB,
    GITHUB_REPOSITORY, the subcommand, service, environment, sha and ref. Re-running a
    job raises GITHUB_RUN_ATTEMPT: a new attempt, a new event.
  GitLab CI (GITLAB_CI=true): CI_PIPELINE_ID, CI_JOB_ID and the same fields. A retried
    job has a new CI_JOB_ID: a new attempt, a new event.
  Elsewhere: a random UUIDv7, made once per call. Retries inside one call reuse it, but
    running the command again sends a second event: give --id a value that is stable for
    the attempt (e.g. your CI's build number) if the step itself may be retried.

Exit status: 0 accepted (or already there), 1 refused (the message says why),
2 bad arguments (nothing sent), 3 not delivered before DORA_EMIT_TIMEOUT.";

const DEPLOY_HELP: &str = "\
Example (the last step of a deploy job, whatever happened before it):
  dora-emit deploy --service checkout --environment prod --outcome \"$JOB_STATUS\"

--sha defaults to the checkout's HEAD and --commit-at to its committer time. A commit
time after the deploy's time (a committer's clock ahead) is left out with a warning
rather than failing the deploy.";

const ROLLBACK_HELP: &str = "\
Example (the rolled-back deploy is marked failed):
  dora-emit rollback --service checkout --sha 9f2c1e7";

const OPENED_HELP: &str = "\
Example (with --sha, the incident marks that deploy as failed):
  dora-emit incident-opened --service checkout --ref INC-123 --sha 9f2c1e7

--sha is not taken from the checkout here: an incident blames a deploy only when told.";

const CLOSED_HELP: &str = "\
Example (paired with its open by --ref):
  dora-emit incident-closed --service checkout --ref INC-123";

/// `dora-emit`'s arguments.
#[derive(Debug, Parser)]
#[command(name = "dora-emit", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Which event to send.
    #[command(subcommand)]
    pub command: Command,
    /// Where to send it.
    #[command(flatten)]
    pub settings: Settings,
}

/// The four events, one subcommand each.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A deploy attempt, successful or not.
    #[command(after_help = DEPLOY_HELP)]
    Deploy(DeployArgs),
    /// A rollback of a deployed change.
    #[command(after_help = ROLLBACK_HELP)]
    Rollback(RollbackArgs),
    /// An incident started.
    #[command(after_help = OPENED_HELP)]
    IncidentOpened(IncidentArgs),
    /// An incident ended.
    #[command(after_help = CLOSED_HELP)]
    IncidentClosed(IncidentClosedArgs),
}

/// `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The service deployed (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long)]
    pub service: String,
    /// How the attempt ended. CI job statuses are accepted as they are: failed,
    /// cancelled and canceled mean failure.
    #[arg(long, value_enum, default_value_t = Outcome::Success)]
    pub outcome: Outcome,
    /// The change deployed [default: the checkout's HEAD].
    #[arg(long)]
    pub sha: Option<String>,
    /// When it was committed, RFC 3339 [default: the commit time of --sha in the checkout].
    #[arg(long, value_name = "TIME")]
    pub commit_at: Option<String>,
    /// What every event takes.
    #[command(flatten)]
    pub common: Common,
}

/// `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The service rolled back.
    #[arg(long)]
    pub service: String,
    /// The change rolled back [default: the checkout's HEAD].
    #[arg(long)]
    pub sha: Option<String>,
    /// What every event takes.
    #[command(flatten)]
    pub common: Common,
}

/// `incident-opened`.
#[derive(Debug, Args)]
pub struct IncidentArgs {
    /// The service the incident is about.
    #[arg(long)]
    pub service: String,
    /// The incident's own name (1-128 characters); its close must carry the same.
    #[arg(long = "ref", value_name = "REF")]
    pub ref_id: String,
    /// The deploy that caused it; it is then counted as failed.
    #[arg(long)]
    pub sha: Option<String>,
    /// What every event takes.
    #[command(flatten)]
    pub common: Common,
}

/// `incident-closed`.
#[derive(Debug, Args)]
pub struct IncidentClosedArgs {
    /// The service the incident was about.
    #[arg(long)]
    pub service: String,
    /// The `--ref` its open carried.
    #[arg(long = "ref", value_name = "REF")]
    pub ref_id: String,
    /// What every event takes.
    #[command(flatten)]
    pub common: Common,
}

/// The arguments every subcommand takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Where it happened (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long, default_value = "prod")]
    pub environment: String,
    /// When it happened, RFC 3339 [default: now].
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The idempotency key (1-128 of A-Z a-z 0-9 . _ : -) [default: derived from the CI
    /// run, else a random UUIDv7].
    #[arg(long)]
    pub id: Option<String>,
    /// Print the event JSON and send nothing.
    #[arg(long, env = "DORA_EMIT_DRY_RUN")]
    pub dry_run: bool,
    /// Publish straight to the JetStream stream at NATS_URL instead of the gateway.
    #[arg(long)]
    pub nats: bool,
}

/// How a deploy attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Outcome {
    /// It reached the environment.
    Success,
    /// It did not, or was interrupted.
    #[value(alias = "failed", alias = "cancelled", alias = "canceled")]
    Failure,
}

/// Where events go, from flags or the environment.
#[derive(Debug, Args)]
#[command(next_help_heading = "Settings")]
pub struct Settings {
    /// The gateway; the event is POSTed to <url>/events.
    #[arg(long = "url", env = "DORA_URL", value_name = "DORA_URL", default_value = "http://127.0.0.1:8081", value_parser = gateway_url, global = true)]
    pub url: reqwest::Url,
    /// How long to keep retrying (network errors, 5xx, 503) before giving up with exit 3.
    #[arg(long, env = "DORA_EMIT_TIMEOUT", value_name = "DORA_EMIT_TIMEOUT", default_value = "60s", value_parser = crate::duration::parse, global = true)]
    pub timeout: Duration,
    /// NATS server with JetStream, for --nats.
    #[arg(long, env = "NATS_URL", value_name = "NATS_URL", default_value = "nats://127.0.0.1:4222", value_parser = nats_url, global = true)]
    pub nats_url: String,
    /// Subject prefix for --nats: `<prefix>.<environment>.<service>.<kind>`.
    #[arg(long, env = "DORA_SUBJECT_PREFIX", value_name = "DORA_SUBJECT_PREFIX", default_value = "dora.events", value_parser = subject_prefix, global = true)]
    pub subject_prefix: String,
}

/// The settings read from the environment, for [`ignore_empty_settings`].
const SETTINGS_VARS: [&str; 5] = [
    "DORA_URL",
    "DORA_EMIT_TIMEOUT",
    "NATS_URL",
    "DORA_SUBJECT_PREFIX",
    "DORA_EMIT_DRY_RUN",
];

/// Treats a setting that is set but empty as unset. CI templates pass settings through
/// as `DORA_URL: ${{ vars.DORA_URL }}`, which is empty when the variable is not defined;
/// that should mean the default, not "not a URL". Call before parsing, while the
/// process has one thread.
pub fn ignore_empty_settings() {
    for name in SETTINGS_VARS {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(name);
        }
    }
}

fn gateway_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("the gateway's URL starts with http:// or https:// and names a host".into());
    }
    Ok(url)
}

fn nats_url(value: &str) -> Result<String, String> {
    value
        .parse::<async_nats::ServerAddr>()
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a NATS server address: {e}"))
}

fn subject_prefix(value: &str) -> Result<String, String> {
    dora_event::subject::check_prefix(value).map(|()| value.to_owned())
}

/// What the command asks for, whichever subcommand it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The event kind.
    pub kind: Kind,
    /// `--service`.
    pub service: String,
    /// `--environment`.
    pub environment: String,
    /// `--sha`, when given.
    pub sha: Option<String>,
    /// Whether a missing `--sha` defaults to the checkout's HEAD.
    pub sha_from_checkout: bool,
    /// `--outcome`, deploys only.
    pub succeeded: Option<bool>,
    /// `--commit-at`, deploys only.
    pub commit_at: Option<String>,
    /// `--ref`, incidents only.
    pub ref_id: Option<String>,
    /// `--at`.
    pub at: Option<String>,
    /// `--id`.
    pub id: Option<String>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--nats`.
    pub nats: bool,
}

impl Command {
    /// Flattens the subcommand into one request.
    pub fn into_request(self) -> Request {
        let blank = |kind, service, common: Common| Request {
            kind,
            service,
            environment: common.environment,
            sha: None,
            sha_from_checkout: false,
            succeeded: None,
            commit_at: None,
            ref_id: None,
            at: common.at,
            id: common.id,
            dry_run: common.dry_run,
            nats: common.nats,
        };
        match self {
            Command::Deploy(a) => Request {
                sha: a.sha,
                sha_from_checkout: true,
                succeeded: Some(a.outcome == Outcome::Success),
                commit_at: a.commit_at,
                ..blank(Kind::Deploy, a.service, a.common)
            },
            Command::Rollback(a) => Request {
                sha: a.sha,
                sha_from_checkout: true,
                ..blank(Kind::Rollback, a.service, a.common)
            },
            Command::IncidentOpened(a) => Request {
                sha: a.sha,
                ref_id: Some(a.ref_id),
                ..blank(Kind::IncidentOpened, a.service, a.common)
            },
            Command::IncidentClosed(a) => Request {
                ref_id: Some(a.ref_id),
                ..blank(Kind::IncidentClosed, a.service, a.common)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_parser_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ci_job_statuses_are_outcomes() {
        for (status, succeeded) in [
            ("success", true),
            ("failure", false),
            ("failed", false),
            ("cancelled", false),
            ("canceled", false),
        ] {
            let cli = Cli::try_parse_from([
                "dora-emit",
                "deploy",
                "--service",
                "web",
                "--outcome",
                status,
            ])
            .unwrap_or_else(|e| panic!("{status}: {e}"));
            assert_eq!(cli.command.into_request().succeeded, Some(succeeded));
        }
        assert!(Cli::try_parse_from([
            "dora-emit",
            "deploy",
            "--service",
            "web",
            "--outcome",
            "skipped"
        ])
        .is_err());
    }

    #[test]
    fn no_token_flag() {
        assert!(
            Cli::try_parse_from(["dora-emit", "deploy", "--service", "web", "--token", "x"])
                .is_err()
        );
    }
}
