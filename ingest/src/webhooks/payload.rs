//! Reading a tool's JSON payload by path, so that a payload missing what dora needs is
//! refused with the path it lacks (`deployment_status.id`), not a generic message.

use chrono::{DateTime, FixedOffset, SubsecRound, TimeZone, Utc};
use serde_json::Value;

/// Why a payload cannot be read: the `400`'s text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError(pub String);

/// A payload of `tool`'s, read field by field.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// The tool's name as people know it, for messages (`GitHub`).
    pub tool: &'static str,
    /// The parsed body, or one element of it.
    pub root: &'a Value,
    /// Where `root` is in the body (`alerts.3.`), for messages.
    pub prefix: &'a str,
}

type Result<T> = std::result::Result<T, PayloadError>;

impl<'a> Payload<'a> {
    /// The whole body of one of `tool`'s payloads.
    pub fn new(tool: &'static str, root: &'a Value) -> Payload<'a> {
        Payload {
            tool,
            root,
            prefix: "",
        }
    }

    /// The value at a dotted `path` (`deployment.sha`); `None` when any step is missing
    /// or `null`.
    pub fn get(&self, path: &str) -> Option<&'a Value> {
        let mut at = self.root;
        for step in path.split('.') {
            at = at.get(step)?;
        }
        (!at.is_null()).then_some(at)
    }

    /// `value`, found at `prefix` of the body (an element of an array, say), as a
    /// payload of its own whose messages give its place.
    pub fn at<'b>(&self, value: &'b Value, prefix: &'b str) -> Payload<'b> {
        Payload {
            tool: self.tool,
            root: value,
            prefix,
        }
    }

    fn missing(&self, path: &str, what: &str) -> PayloadError {
        let (tool, prefix) = (self.tool, self.prefix);
        match self.get(path) {
            None => PayloadError(format!(
                "not a {tool} payload dora can read: `{prefix}{path}` is missing"
            )),
            Some(_) => PayloadError(format!(
                "not a {tool} payload dora can read: `{prefix}{path}` must be {what}"
            )),
        }
    }

    /// A string at `path` that must be there.
    pub fn str(&self, path: &str) -> Result<&'a str> {
        self.get(path)
            .and_then(Value::as_str)
            .ok_or_else(|| self.missing(path, "a string"))
    }

    /// A string at `path` if there is one and it is not empty; a value of another type
    /// is refused.
    pub fn opt_str(&self, path: &str) -> Result<Option<&'a str>> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok((!s.is_empty()).then_some(s.as_str())),
            Some(_) => Err(self.missing(path, "a string")),
        }
    }

    /// An identifier at `path`: a whole number (the tools' ids are never negative) or a
    /// string, as text.
    pub fn id(&self, path: &str) -> Result<String> {
        match self.get(path) {
            Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(self.missing(path, "a number or a non-empty string")),
        }
    }

    /// An RFC 3339 time at `path`.
    pub fn time(&self, path: &str) -> Result<DateTime<Utc>> {
        let text = self.str(path)?;
        parse_rfc3339(text).ok_or_else(|| self.bad_time(path, text, "an RFC 3339 time"))
    }

    /// An RFC 3339 time at `path` if there is one.
    pub fn opt_time(&self, path: &str) -> Result<Option<DateTime<Utc>>> {
        match self.opt_str(path)? {
            None => Ok(None),
            Some(text) => parse_rfc3339(text)
                .map(Some)
                .ok_or_else(|| self.bad_time(path, text, "an RFC 3339 time")),
        }
    }

    /// A whole number at `path`, for epoch times.
    pub fn integer(&self, path: &str) -> Result<i64> {
        self.get(path)
            .and_then(Value::as_i64)
            .ok_or_else(|| self.missing(path, "a whole number"))
    }

    /// The refusal of a time that does not read as `form`.
    pub fn bad_time(&self, path: &str, text: &str, form: &str) -> PayloadError {
        let shown = quote(text);
        let (tool, prefix) = (self.tool, self.prefix);
        PayloadError(format!(
            "not a {tool} payload dora can read: `{prefix}{path}` must be {form}; got `{shown}`"
        ))
    }
}

/// A value of the tool's, as a message quotes it: control characters dropped, cut at
/// 64 characters, so a hostile payload cannot fill the answer or the log.
pub fn quote(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// RFC 3339 with any offset, as UTC to the microsecond the store keeps.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
}

/// GitLab's own time format (`2021-04-28 21:50:00 +0200`, or `... UTC`), or RFC 3339.
pub fn parse_gitlab_time(text: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_rfc3339(text) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z") {
        return Some(t.with_timezone(&Utc).trunc_subsecs(6));
    }
    let utc = text.strip_suffix(" UTC")?;
    let naive = chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S").ok()?;
    FixedOffset::east_opt(0)?
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// The time `count` units of `per_second` after the Unix epoch (1000 for milliseconds,
/// 10^9 for nanoseconds), to the microsecond.
pub fn from_epoch(count: i64, per_second: i64) -> Option<DateTime<Utc>> {
    let seconds = count.div_euclid(per_second);
    let rest = count.rem_euclid(per_second);
    let nanos = u32::try_from(rest * (1_000_000_000 / per_second)).ok()?;
    DateTime::from_timestamp(seconds, nanos).map(|t| t.trunc_subsecs(6))
}

/// An event time as the event JSON carries it.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_what_is_missing_are_named() {
        let v = json!({"a": {"b": "x", "n": 7, "z": null, "e": ""}});
        let p = Payload::new("GitHub", &v);
        assert_eq!(p.str("a.b"), Ok("x"));
        assert_eq!(p.id("a.n"), Ok("7".to_owned()));
        assert_eq!(p.id("a.b"), Ok("x".to_owned()));
        assert_eq!(p.opt_str("a.z"), Ok(None));
        assert_eq!(p.opt_str("a.e"), Ok(None), "an empty string is no value");
        assert_eq!(
            p.str("a.c").unwrap_err().0,
            "not a GitHub payload dora can read: `a.c` is missing"
        );
        assert_eq!(
            p.str("a.n").unwrap_err().0,
            "not a GitHub payload dora can read: `a.n` must be a string"
        );
        assert!(p.opt_str("a.n").is_err());
        assert!(p.id("a.e").is_err());
        let numbers = json!({"float": 1.5, "negative": -3, "big": 18_446_744_073_709_551_615_u64});
        let n = Payload::new("GitHub", &numbers);
        assert!(n.id("float").unwrap_err().0.contains("must be a number or"));
        assert!(n.id("negative").is_err());
        assert_eq!(n.id("big"), Ok("18446744073709551615".to_owned()));
        assert!(p.time("a.b").unwrap_err().0.contains("RFC 3339"));
        let element = p.at(&v["a"], "list.3.");
        assert_eq!(
            element.str("n").unwrap_err().0,
            "not a GitHub payload dora can read: `list.3.n` must be a string"
        );
    }

    #[test]
    fn times_in_each_tools_form() {
        let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_gitlab_time("2021-04-28 21:50:00 +0200"),
            Some(utc("2021-04-28T19:50:00Z"))
        );
        assert_eq!(
            parse_gitlab_time("2021-04-28 21:50:00 UTC"),
            Some(utc("2021-04-28T21:50:00Z"))
        );
        assert_eq!(
            parse_gitlab_time("2021-04-28T21:50:00+02:00"),
            Some(utc("2021-04-28T19:50:00Z"))
        );
        assert_eq!(parse_gitlab_time("yesterday"), None);
        assert_eq!(
            from_epoch(1_517_559_581_111, 1000),
            Some(utc("2018-02-02T08:19:41.111Z"))
        );
        assert_eq!(
            from_epoch(1_517_559_582_000_123_456, 1_000_000_000),
            Some(utc("2018-02-02T08:19:42.000123Z")),
            "nanoseconds are cut to the microsecond the store keeps"
        );
        assert_eq!(from_epoch(-1, 1000), Some(utc("1969-12-31T23:59:59.999Z")));
        assert_eq!(
            parse_rfc3339("2026-03-10T12:00:00.1234567+01:00"),
            Some(utc("2026-03-10T11:00:00.123456Z"))
        );
    }
}
