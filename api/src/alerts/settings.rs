//! The alert settings (CONTRACT.md sections 6 and 8), checked at start.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

/// How and when the API checks for regressions, where it keeps their state and where
/// it reports them. Flattened into the API's config; its `Debug` hides the webhook URL,
/// which is a secret, and the database password.
#[derive(Clone, PartialEq, clap::Args)]
pub struct AlertSettings {
    /// PostgreSQL where the alert state lives (schema `dora_alerts`, which the API
    /// creates, migrates and writes): a writable primary. Default: `DATABASE_URL`. Set
    /// it when `DATABASE_URL` names a read replica; the API then writes nothing
    /// through `DATABASE_URL`. Use [`AlertSettings::database_url_or`].
    #[arg(
        long = "alerts-database-url",
        env = "DORA_ALERTS_DATABASE_URL",
        value_name = "DORA_ALERTS_DATABASE_URL",
        value_parser = dora_event::settings::database_url,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Slack incoming-webhook URL for alerts; without it alerts are only logged. A
    /// secret: it is checked after parsing (see [`AlertSettings::check`]), because a
    /// parser's error message would print it.
    #[arg(
        long,
        env = "DORA_SLACK_WEBHOOK_URL",
        value_name = "DORA_SLACK_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub slack_webhook_url: Option<String>,
    /// Base of the dashboard links in alert messages; default `http://` + the address
    /// the API listens on.
    #[arg(long, env = "DORA_PUBLIC_URL", value_name = "DORA_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<Url>,
    /// How often the regressions are checked (`30s`, `15m`, `1h`).
    #[arg(long, env = "DORA_ALERT_INTERVAL", value_name = "DORA_ALERT_INTERVAL", default_value = "15m", value_parser = interval)]
    pub interval: Duration,
    /// Length of the compared windows, in days.
    #[arg(long, env = "DORA_ALERT_DAYS", value_name = "DORA_ALERT_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1825))]
    pub days: u32,
    /// Environments watched, comma-separated.
    #[arg(long, env = "DORA_ALERT_ENVIRONMENTS", value_name = "DORA_ALERT_ENVIRONMENTS", default_value = "prod", value_parser = environments)]
    pub environments: Environments,
    /// Fewest deploy attempts (or lead-time samples) in the current window for a
    /// regression to count.
    #[arg(long, env = "DORA_ALERT_MIN_ATTEMPTS", value_name = "DORA_ALERT_MIN_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_attempts: u32,
    /// Rise of the change failure rate, in percentage points, beyond which it regressed.
    #[arg(long, env = "DORA_ALERT_CFR_POINTS", value_name = "DORA_ALERT_CFR_POINTS", default_value_t = 10.0, value_parser = cfr_points)]
    pub cfr_points: f64,
    /// Relative rise of the median lead time beyond which it regressed (0.25 = 25%).
    #[arg(long, env = "DORA_ALERT_LEAD_TIME_RISE", value_name = "DORA_ALERT_LEAD_TIME_RISE", default_value_t = 0.25, value_parser = lead_time_rise)]
    pub lead_time_rise: f64,
    /// Least absolute rise of the median lead time for a regression (`1h`, `30m`).
    #[arg(long, env = "DORA_ALERT_LEAD_TIME_MIN", value_name = "DORA_ALERT_LEAD_TIME_MIN", default_value = "1h", value_parser = duration)]
    pub lead_time_min: Duration,
}

/// The watched environments: at least one, no repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environments(pub Vec<String>);

impl Default for AlertSettings {
    /// The contract's defaults (a unit test holds them equal to clap's).
    fn default() -> Self {
        AlertSettings {
            database_url: None,
            slack_webhook_url: None,
            public_url: None,
            interval: Duration::from_secs(15 * 60),
            days: 7,
            environments: Environments(vec!["prod".to_owned()]),
            min_attempts: 3,
            cfr_points: 10.0,
            lead_time_rise: 0.25,
            lead_time_min: Duration::from_secs(3600),
        }
    }
}

impl fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertSettings")
            .field(
                "database_url",
                &self
                    .database_url
                    .as_deref()
                    .map(dora_event::settings::redact_url),
            )
            .field(
                "slack_webhook_url",
                &self.slack_webhook_url.as_ref().map(|_| "***"),
            )
            .field("public_url", &self.public_url.as_ref().map(Url::as_str))
            .field("interval", &self.interval)
            .field("days", &self.days)
            .field("environments", &self.environments.0)
            .field("min_attempts", &self.min_attempts)
            .field("cfr_points", &self.cfr_points)
            .field("lead_time_rise", &self.lead_time_rise)
            .field("lead_time_min", &self.lead_time_min)
            .finish()
    }
}

impl AlertSettings {
    /// Where the alert state lives: `DORA_ALERTS_DATABASE_URL`, else `store_url`
    /// (`DATABASE_URL`), as before the setting existed.
    pub fn database_url_or<'a>(&'a self, store_url: &'a str) -> &'a str {
        self.database_url.as_deref().unwrap_or(store_url)
    }

    /// The webhook URL, parsed; an error names the setting but never shows its value.
    pub fn webhook(&self) -> Result<Option<Url>, crate::Error> {
        let Some(raw) = &self.slack_webhook_url else {
            return Ok(None);
        };
        let bad = |message: &str| crate::Error::Setting {
            name: "DORA_SLACK_WEBHOOK_URL",
            message: message.to_owned(),
        };
        if raw.trim().is_empty() {
            return Err(bad("is empty; unset it to only log alerts"));
        }
        // The parser's own message is safe (it never quotes the input), but a short
        // fixed one says enough.
        let url = Url::parse(raw)
            .map_err(|_| bad("is not a URL (the value is not shown: it is a secret)"))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(bad(
                "must be an https:// URL (the value is not shown: it is a secret)",
            ));
        }
        Ok(Some(url))
    }

    /// Checks what clap could not check without printing a secret.
    pub fn check(&self) -> Result<(), crate::Error> {
        self.webhook().map(|_| ())
    }
}

fn duration(value: &str) -> Result<Duration, String> {
    dora_event::duration::parse(value)
}

fn interval(value: &str) -> Result<Duration, String> {
    match dora_event::duration::parse(value)? {
        d if d.is_zero() => Err("must be longer than 0s".to_owned()),
        d => Ok(d),
    }
}

fn public_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL such as https://dora.example.com".into());
    }
    Ok(url)
}

fn environments(value: &str) -> Result<Environments, String> {
    let mut out: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim) {
        dora_event::subject_token("environment", name).map_err(|e| e.message)?;
        if out.iter().any(|e| e == name) {
            return Err(format!("`{name}` is listed twice"));
        }
        out.push(name.to_owned());
    }
    Ok(Environments(out))
}

fn number(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("`{value}` is not a number"))
}

fn cfr_points(value: &str) -> Result<f64, String> {
    match number(value)? {
        x if (0.0..100.0).contains(&x) => Ok(x),
        _ => Err(format!(
            "`{value}`: percentage points from 0 to below 100 (10 means 10% to more than 20% fires)"
        )),
    }
}

fn lead_time_rise(value: &str) -> Result<f64, String> {
    match number(value)? {
        x if x >= 0.0 => Ok(x),
        _ => Err(format!(
            "`{value}`: a relative rise of 0 or more (0.25 means 25% longer)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Only {
        #[command(flatten)]
        alerts: AlertSettings,
    }

    fn parse(args: &[&str]) -> Result<AlertSettings, String> {
        Only::try_parse_from(std::iter::once("dora-api").chain(args.iter().copied()))
            .map(|o| o.alerts)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_the_contracts() {
        assert_eq!(parse(&[]).unwrap(), AlertSettings::default());
    }

    #[test]
    fn every_malformed_setting_is_named() {
        for (flag, value, name) in [
            ("--interval", "0s", "DORA_ALERT_INTERVAL"),
            ("--interval", "soon", "DORA_ALERT_INTERVAL"),
            ("--days", "0", "DORA_ALERT_DAYS"),
            ("--environments", "prod,,staging", "DORA_ALERT_ENVIRONMENTS"),
            ("--environments", "prod,prod", "DORA_ALERT_ENVIRONMENTS"),
            ("--min-attempts", "0", "DORA_ALERT_MIN_ATTEMPTS"),
            ("--cfr-points", "ten", "DORA_ALERT_CFR_POINTS"),
            ("--cfr-points", "100", "DORA_ALERT_CFR_POINTS"),
            ("--lead-time-rise", "-0.1", "DORA_ALERT_LEAD_TIME_RISE"),
            ("--lead-time-min", "1 hour", "DORA_ALERT_LEAD_TIME_MIN"),
            ("--public-url", "dora.example.com", "DORA_PUBLIC_URL"),
            (
                "--alerts-database-url",
                "mysql://db/dora",
                "DORA_ALERTS_DATABASE_URL",
            ),
        ] {
            let message = parse(&[&format!("{flag}={value}")]).unwrap_err();
            assert!(message.contains(name), "{flag}={value}: {message}");
        }
        let s = parse(&["--environments=prod, staging", "--interval=30s"]).unwrap();
        assert_eq!(s.environments.0, ["prod", "staging"]);
        assert_eq!(s.interval, Duration::from_secs(30));
    }

    #[test]
    fn the_alert_state_lives_in_database_url_unless_told_otherwise() {
        let store = "postgres://reader@replica:5432/dora";
        assert_eq!(parse(&[]).unwrap().database_url_or(store), store);
        let primary = "postgres://dora:pr1maryPw@primary:5432/dora";
        let s = parse(&[&format!("--alerts-database-url={primary}")]).unwrap();
        assert_eq!(s.database_url_or(store), primary);
        let shown = format!("{s:?}");
        assert!(shown.contains("primary:5432"), "{shown}");
        assert!(!shown.contains("pr1maryPw"), "{shown}");
    }

    #[test]
    fn the_webhook_is_checked_without_showing_it() {
        let secret = "hooks.slack.com/services/T000/B000/s3cr3t";
        let s = parse(&[&format!("--slack-webhook-url={secret}")]).unwrap();
        let message = s.check().unwrap_err().to_string();
        assert!(message.contains("DORA_SLACK_WEBHOOK_URL"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        let s = parse(&[&format!("--slack-webhook-url=https://{secret}")]).unwrap();
        assert!(s.check().is_ok());
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
