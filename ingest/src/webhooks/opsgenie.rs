//! Opsgenie's alert webhooks (CONTRACT.md section 9): `Create` opens an incident,
//! `Close` closes it; every other action is ignored.

use serde_json::Value;

use super::names::Names;
use super::payload::{from_epoch, quote, Payload, PayloadError};
use super::{Draft, Mapped};
use dora_event::Kind;

/// The payload's action, as events.
pub fn map(body: &Value, names: &Names) -> Result<Mapped, PayloadError> {
    let p = Payload::new("Opsgenie", body);
    // Opsgenie writes `createdAt` in milliseconds and `updatedAt` in nanoseconds.
    let (kind, what, time_path, per_second) = match p.str("action")? {
        "Create" => (Kind::IncidentOpened, "create", "alert.createdAt", 1_000),
        "Close" => (
            Kind::IncidentClosed,
            "close",
            "alert.updatedAt",
            1_000_000_000,
        ),
        other => {
            return Ok(Mapped::Ignored(format!(
                "Opsgenie action `{}` is not one dora uses (`Create`, `Close`)",
                quote(other)
            )))
        }
    };
    let alert = p.id("alert.alertId")?;
    let service = match tagged_service(p)?.or(p.opt_str("alert.entity")?) {
        Some(name) => names.service(name, name),
        // `service` gives the URL's name whatever it is asked.
        None if names.has_service() => names.service("", ""),
        None => {
            return Ok(Mapped::Ignored(
                "the alert names no service: give it a `service:<name>` tag or an entity, \
                 or add `?service=<name>` to the URL"
                    .to_owned(),
            ))
        }
    };
    let count = p.integer(time_path)?;
    let occurred_at = from_epoch(count, per_second)
        .ok_or_else(|| p.bad_time(time_path, &count.to_string(), "a time since the Unix epoch"))?;
    Ok(Mapped::Events(vec![Draft::incident(
        kind,
        format!("opsgenie-{alert}-{what}"),
        service,
        names.environment(None),
        format!("opsgenie:{alert}"),
        occurred_at,
    )]))
}

/// The name of the first `service:<name>` tag.
fn tagged_service<'a>(p: Payload<'a>) -> Result<Option<&'a str>, PayloadError> {
    let Some(tags) = p.get("alert.tags") else {
        return Ok(None);
    };
    let tags = tags.as_array().ok_or_else(|| {
        PayloadError(
            "not an Opsgenie payload dora can read: `alert.tags` must be an array".to_owned(),
        )
    })?;
    Ok(tags
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|t| t.strip_prefix("service:"))
        .map(str::trim)
        .find(|name| !name.is_empty()))
}
