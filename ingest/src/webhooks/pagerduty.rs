//! PagerDuty's v3 webhooks (CONTRACT.md section 9): an incident triggered or reopened
//! opens one, resolved closes it; every other event type is ignored.

use serde_json::Value;

use super::names::Names;
use super::payload::{quote, Payload, PayloadError};
use super::{Draft, Mapped};
use dora_event::Kind;

/// The payload's event, as events.
pub fn map(body: &Value, names: &Names) -> Result<Mapped, PayloadError> {
    let p = Payload::new("PagerDuty", body);
    let kind = match p.str("event.event_type")? {
        "incident.triggered" | "incident.reopened" => Kind::IncidentOpened,
        "incident.resolved" => Kind::IncidentClosed,
        other => {
            return Ok(Mapped::Ignored(format!(
                "PagerDuty event type `{}` is not one dora uses (`incident.triggered`, `incident.reopened`, `incident.resolved`)",
                quote(other)
            )))
        }
    };
    let id = format!("pagerduty-{}", p.id("event.id")?);
    let ref_id = format!("pagerduty:{}", p.id("event.data.id")?);
    let service = p.str("event.data.service.summary")?;
    Ok(Mapped::Events(vec![Draft::incident(
        kind,
        id,
        names.service(service, service),
        names.environment(None),
        ref_id,
        p.time("event.occurred_at")?,
    )]))
}
