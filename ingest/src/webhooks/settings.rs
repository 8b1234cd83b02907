//! The webhook routes' settings (CONTRACT.md section 9), flattened into the gateway's.

use std::fmt;

use clap::Args;

use super::names::NameMap;
use super::proof::Secrets;

/// Secrets and names of the tools' webhooks. A route whose secret is missing answers
/// `404`; the GitLab, Opsgenie and Alertmanager routes use `DORA_INGEST_TOKENS`.
#[derive(Debug, Clone, Args)]
pub struct WebhookSettings {
    /// Secrets of GitHub's webhooks (`X-Hub-Signature-256`), comma-separated so one can
    /// be rotated; each at least 16 characters. Without it `POST /webhooks/github`
    /// answers 404.
    #[arg(long = "github-webhook-secret", env = "DORA_GITHUB_WEBHOOK_SECRET", value_name = "DORA_GITHUB_WEBHOOK_SECRET",
          value_parser = Secrets::parse, hide_env_values = true)]
    pub github_secret: Option<Secrets>,
    /// The GitHub Actions workflows that deploy, as `<workflow_run.path>=<environment>`
    /// pairs, comma-separated (`.github/workflows/deploy.yml=production`): their
    /// completed runs are deploys. None by default: `workflow_run` is then ignored.
    #[arg(long = "github-deploy-workflows", env = "DORA_GITHUB_DEPLOY_WORKFLOWS", value_name = "DORA_GITHUB_DEPLOY_WORKFLOWS",
          default_value = "", value_parser = NameMap::parse)]
    pub github_deploy_workflows: NameMap,
    /// Secrets of PagerDuty's v3 webhook subscriptions (`X-PagerDuty-Signature`),
    /// comma-separated; each at least 16 characters. Without it
    /// `POST /webhooks/pagerduty` answers 404.
    #[arg(long = "pagerduty-webhook-secret", env = "DORA_PAGERDUTY_WEBHOOK_SECRET", value_name = "DORA_PAGERDUTY_WEBHOOK_SECRET",
          value_parser = Secrets::parse, hide_env_values = true)]
    pub pagerduty_secret: Option<Secrets>,
    /// Dora's service names for the tools' names, `from=to` pairs, comma-separated:
    /// for GitHub the repository's `full_name`, for GitLab the project's
    /// `path_with_namespace`, else the tool's service name. Unmapped names are used with
    /// each character outside `A-Z a-z 0-9 _ -` made `-`.
    #[arg(long = "webhook-services", env = "DORA_WEBHOOK_SERVICES", value_name = "DORA_WEBHOOK_SERVICES",
          default_value = "", value_parser = NameMap::parse)]
    pub services: NameMap,
    /// Dora's environment names for the tools' names, `from=to` pairs, comma-separated.
    #[arg(long = "webhook-environments", env = "DORA_WEBHOOK_ENVIRONMENTS", value_name = "DORA_WEBHOOK_ENVIRONMENTS",
          default_value = DEFAULT_ENVIRONMENTS, value_parser = NameMap::parse)]
    pub environments: NameMap,
    /// A GitHub token that can read the repositories' commits: the gateway then reads
    /// each deployed commit's time for lead time. Without it no lookup is made.
    #[arg(long = "github-token", env = "DORA_GITHUB_TOKEN", value_name = "DORA_GITHUB_TOKEN",
          value_parser = ApiToken::parse, hide_env_values = true)]
    pub github_token: Option<ApiToken>,
    /// GitHub's REST API, for the commit lookups (GitHub Enterprise:
    /// `https://<host>/api/v3`).
    #[arg(long = "github-api-url", env = "DORA_GITHUB_API_URL", value_name = "DORA_GITHUB_API_URL",
          default_value = "https://api.github.com", value_parser = api_url)]
    pub github_api_url: String,
    /// A GitLab token (`read_api`) for the commit lookups. Without it no lookup is made.
    #[arg(long = "gitlab-token", env = "DORA_GITLAB_TOKEN", value_name = "DORA_GITLAB_TOKEN",
          value_parser = ApiToken::parse, hide_env_values = true)]
    pub gitlab_token: Option<ApiToken>,
    /// GitLab's REST API, for the commit lookups (self-managed:
    /// `https://<host>/api/v4`).
    #[arg(long = "gitlab-api-url", env = "DORA_GITLAB_API_URL", value_name = "DORA_GITLAB_API_URL",
          default_value = "https://gitlab.com/api/v4", value_parser = api_url)]
    pub gitlab_api_url: String,
}

/// `DORA_WEBHOOK_ENVIRONMENTS`'s default: the tools' usual name for production.
const DEFAULT_ENVIRONMENTS: &str = "production=prod";

impl Default for WebhookSettings {
    /// What the gateway runs with when none of the settings is given.
    fn default() -> Self {
        WebhookSettings {
            github_secret: None,
            github_deploy_workflows: NameMap::default(),
            pagerduty_secret: None,
            services: NameMap::default(),
            environments: NameMap::parse(DEFAULT_ENVIRONMENTS).unwrap_or_default(),
            github_token: None,
            github_api_url: "https://api.github.com".to_owned(),
            gitlab_token: None,
            gitlab_api_url: "https://gitlab.com/api/v4".to_owned(),
        }
    }
}

/// An API token of a tool: sent in a header, never logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl ApiToken {
    /// A token: not empty, nothing a header cannot carry.
    pub fn parse(value: &str) -> Result<ApiToken, String> {
        let token = value.trim();
        if token.is_empty() {
            return Err("empty: give a token, or leave the setting out".to_owned());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is printable ASCII without spaces".to_owned());
        }
        Ok(ApiToken(token.to_owned()))
    }

    /// The token, for the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An `http` or `https` base URL, without its trailing `/`.
fn api_url(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or a fragment".to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let d = WebhookSettings::default();
        assert_eq!(d.environments.get("production"), Some("prod"));
        assert_eq!(d.github_api_url, "https://api.github.com");
        assert!(d.github_secret.is_none() && d.pagerduty_secret.is_none());
        assert!(d.github_token.is_none() && d.gitlab_token.is_none());
    }

    #[test]
    fn urls_and_tokens_are_checked_and_tokens_hidden() {
        assert_eq!(
            api_url("https://ghe.example.com/api/v3/").unwrap(),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            api_url("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
        for bad in ["ftp://x", "not a url", "https://x/?a=1", "https://x/#f"] {
            assert!(api_url(bad).is_err(), "{bad}");
        }
        let token = ApiToken::parse(" ghp_secret123 ").unwrap();
        assert_eq!(token.expose(), "ghp_secret123");
        assert_eq!(format!("{token:?}"), "ApiToken(***)");
        assert!(ApiToken::parse("  ").is_err());
        assert!(ApiToken::parse("a b").is_err());
    }
}
