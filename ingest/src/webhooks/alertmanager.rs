//! Prometheus Alertmanager's webhook (CONTRACT.md section 9): each alert of the group,
//! firing, opens an incident at its `startsAt`; resolved, closes it at its `endsAt`.
//! The incident is the alert's fingerprint and start, so Alertmanager's repeats of the
//! same notification are the same events.

use serde_json::Value;

use super::names::Names;
use super::payload::{Payload, PayloadError};
use super::{Draft, Mapped};
use dora_event::Kind;

/// The payload's alerts, as events; an alert that names no service is skipped.
pub fn map(body: &Value, names: &Names) -> Result<Mapped, PayloadError> {
    let p = Payload::new("Alertmanager", body);
    let alerts = p.get("alerts").and_then(Value::as_array).ok_or_else(|| {
        PayloadError(
            "not an Alertmanager payload dora can read: `alerts` must be an array".to_owned(),
        )
    })?;
    let mut drafts = Vec::with_capacity(alerts.len());
    for (i, alert) in alerts.iter().enumerate() {
        let place = format!("alerts.{i}.");
        let a = p.at(alert, &place);
        let kind = match a.str("status")? {
            "firing" => Kind::IncidentOpened,
            "resolved" => Kind::IncidentClosed,
            _ => continue,
        };
        let service = match a.opt_str("labels.service")? {
            Some(name) => Some(name),
            None => a.opt_str("labels.job")?,
        };
        let service = match service {
            Some(name) => names.service(name, name),
            None if names.has_service() => names.service("", ""),
            None => continue,
        };
        let environment = match a.opt_str("labels.environment")? {
            Some(name) => Some(name),
            None => a.opt_str("labels.env")?,
        };
        let fingerprint = a.str("fingerprint")?;
        let starts_at = a.time("startsAt")?;
        let (occurred_at, status) = match kind {
            Kind::IncidentOpened => (starts_at, "firing"),
            _ => (a.time("endsAt")?, "resolved"),
        };
        let start = starts_at.timestamp();
        drafts.push(Draft::incident(
            kind,
            format!("alertmanager-{fingerprint}-{start}-{status}"),
            service,
            names.environment(environment),
            format!("alertmanager:{fingerprint}:{start}"),
            occurred_at,
        ));
    }
    if drafts.is_empty() {
        return Ok(Mapped::Ignored(if alerts.is_empty() {
            "the notification holds no alerts".to_owned()
        } else {
            format!(
                "none of the {} alert(s) is firing or resolved with a service (label `service` or `job`); \
                 add `?service=<name>` to the URL to name one",
                alerts.len()
            )
        }));
    }
    if drafts.len() < alerts.len() {
        tracing::info!(
            skipped = alerts.len() - drafts.len(),
            kept = drafts.len(),
            "alerts without a service (label `service` or `job`) skipped"
        );
    }
    Ok(Mapped::Events(drafts))
}
