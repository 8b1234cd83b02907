//! The commit time of a deployed sha, read from GitHub's or GitLab's API: lead time
//! needs it, and neither tool's deployment payload carries it (CONTRACT.md section 9).
//!
//! A lookup never holds a deploy back: one that fails, times out or answers a time
//! after the deploy leaves `commit_at` out, is logged, and is counted on `/metrics`
//! (`dora_ingest_commit_lookups_total{tool,outcome}`). The tokens go in request headers
//! only; neither they nor a response body are ever logged.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::payload::parse_rfc3339;
use super::settings::{ApiToken, WebhookSettings};
use crate::metrics::IngestMetrics;

/// Longest a lookup may take, the contract's: the tool waits for the webhook's answer.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Which API a lookup asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `GET /repos/<full_name>/commits/<sha>`.
    GitHub,
    /// `GET /projects/<id>/repository/commits/<sha>`.
    GitLab,
}

impl Tool {
    /// Both APIs.
    pub const ALL: [Tool; 2] = [Tool::GitHub, Tool::GitLab];

    /// The `tool` label.
    pub fn label(self) -> &'static str {
        match self {
            Tool::GitHub => "github",
            Tool::GitLab => "gitlab",
        }
    }
}

/// One commit to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Which API.
    pub tool: Tool,
    /// GitHub's `owner/name`, or GitLab's numeric project id.
    pub project: String,
    /// The deployed commit.
    pub sha: String,
}

/// How a lookup ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A commit time at or before the deploy.
    Found,
    /// A commit time after the deploy (clock skew, or the wrong commit): left out.
    AfterDeploy,
    /// The API does not know the commit (404).
    NotFound,
    /// The API refused the token (401, 403: a wrong token, one without access to the
    /// repository, or GitHub's rate limit).
    Refused,
    /// Any other answer, an unreadable body, or no connection.
    Failed,
    /// No answer within [`LOOKUP_TIMEOUT`].
    Timeout,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 6] = [
        Outcome::Found,
        Outcome::AfterDeploy,
        Outcome::NotFound,
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Timeout,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Found => "found",
            Outcome::AfterDeploy => "after_deploy",
            Outcome::NotFound => "not_found",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
        }
    }
}

/// The configured APIs and the HTTP client that asks them.
#[derive(Debug, Clone)]
pub struct Commits {
    client: reqwest::Client,
    github: Option<(String, ApiToken)>,
    gitlab: Option<(String, ApiToken)>,
}

impl Commits {
    /// Lookups for the APIs whose token `settings` holds.
    pub fn new(settings: &WebhookSettings) -> Commits {
        let client = reqwest::Client::builder()
            .timeout(LOOKUP_TIMEOUT)
            // GitHub refuses requests without a User-Agent.
            .user_agent(concat!("dora-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Commits {
            client,
            github: settings
                .github_token
                .clone()
                .map(|t| (settings.github_api_url.clone(), t)),
            gitlab: settings
                .gitlab_token
                .clone()
                .map(|t| (settings.gitlab_api_url.clone(), t)),
        }
    }

    /// Whether lookups are made for `tool`.
    pub fn enabled(&self, tool: Tool) -> bool {
        match tool {
            Tool::GitHub => self.github.is_some(),
            Tool::GitLab => self.gitlab.is_some(),
        }
    }

    /// The commit time of `lookup` if it is known and not after `deployed_at`; `None`
    /// without a token for its tool (no lookup, nothing counted) or when the lookup
    /// fails (logged and counted).
    pub async fn commit_at(
        &self,
        lookup: &Lookup,
        deployed_at: DateTime<Utc>,
        metrics: &IngestMetrics,
    ) -> Option<DateTime<Utc>> {
        let (base, token) = match lookup.tool {
            Tool::GitHub => self.github.as_ref()?,
            Tool::GitLab => self.gitlab.as_ref()?,
        };
        let (found, outcome) = match self.ask(lookup, base, token).await {
            Ok(at) if at <= deployed_at => (Some(at), Outcome::Found),
            Ok(at) => {
                tracing::warn!(tool = lookup.tool.label(), project = %lookup.project, sha = %lookup.sha,
                    committed = %at, deployed = %deployed_at,
                    "commit time is after the deploy; the deploy is kept without commit_at");
                (None, Outcome::AfterDeploy)
            }
            Err((outcome, why)) => {
                tracing::warn!(tool = lookup.tool.label(), project = %lookup.project, sha = %lookup.sha,
                    outcome = outcome.label(), %why,
                    "commit lookup failed; the deploy is kept without commit_at");
                (None, outcome)
            }
        };
        metrics.commit_lookup(lookup.tool.label(), outcome.label());
        found
    }

    async fn ask(
        &self,
        lookup: &Lookup,
        base: &str,
        token: &ApiToken,
    ) -> Result<DateTime<Utc>, (Outcome, String)> {
        let failed = |why: String| (Outcome::Failed, why);
        let mut url = reqwest::Url::parse(base).map_err(|e| failed(e.to_string()))?;
        let request = {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| failed("the API URL cannot take a path".to_owned()))?;
            segments.pop_if_empty();
            match lookup.tool {
                Tool::GitHub => {
                    segments.push("repos");
                    // `owner/name`: two segments, each escaped on its own.
                    segments.extend(lookup.project.split('/'));
                    segments.extend(["commits", &lookup.sha]);
                }
                Tool::GitLab => {
                    segments.extend(["projects", &lookup.project, "repository", "commits"]);
                    segments.push(&lookup.sha);
                }
            }
            drop(segments);
            let request = self.client.get(url.clone());
            match lookup.tool {
                Tool::GitHub => request
                    .bearer_auth(token.expose())
                    .header("accept", "application/vnd.github+json"),
                Tool::GitLab => request.header("private-token", token.expose()),
            }
        };
        let response = request.send().await.map_err(|e| {
            let outcome = if e.is_timeout() {
                Outcome::Timeout
            } else {
                Outcome::Failed
            };
            // Without the URL: reqwest's message is enough, and the URL adds nothing
            // the log's fields do not already say.
            (outcome, e.without_url().to_string())
        })?;
        let status = response.status();
        match status.as_u16() {
            404 => return Err((Outcome::NotFound, format!("{status} from {url}"))),
            401 | 403 => return Err((Outcome::Refused, format!("{status} from {url}"))),
            _ => {}
        }
        if !status.is_success() {
            return Err(failed(format!("{status} from {url}")));
        }
        let body: Value = response.json().await.map_err(|e| {
            let outcome = if e.is_timeout() {
                Outcome::Timeout
            } else {
                Outcome::Failed
            };
            (outcome, format!("unreadable answer: {}", e.without_url()))
        })?;
        let path: &[&str] = match lookup.tool {
            Tool::GitHub => &["commit", "committer", "date"],
            Tool::GitLab => &["committed_date"],
        };
        let text = path
            .iter()
            .try_fold(&body, |v, step| v.get(step))
            .and_then(Value::as_str)
            .ok_or_else(|| failed(format!("the answer has no `{}`", path.join("."))))?;
        parse_rfc3339(text)
            .ok_or_else(|| failed(format!("`{}` is not an RFC 3339 time", path.join("."))))
    }
}
