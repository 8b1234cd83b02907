//! Query-string parsing for every metrics route. Strict: unknown and repeated
//! parameters are refused, and each route names the parameters it takes, so a typo
//! such as `day=30` never silently answers for the default 7 days.

use chrono::{DateTime, TimeDelta, Utc};

use crate::dora::MetricsQuery;
use crate::error::{Error, Result};

/// The parameters of `/dora`.
pub const DORA: &[&str] = &["days", "offset", "as_of", "service", "environment"];
/// The parameters of `/dora/trend`.
pub const TREND: &[&str] = &[
    "days",
    "offset",
    "as_of",
    "service",
    "environment",
    "windows",
];
/// The parameters of `/dora/failures`.
pub const FAILURES: &[&str] = &["days", "offset", "as_of", "service", "environment", "limit"];
/// The parameters of `/dashboard`: the page always shows the current window and the
/// one before it, so it takes no `offset`.
pub const DASHBOARD: &[&str] = &["days", "as_of", "service", "environment"];

/// The window and scope every metrics route takes, as `/openapi.json` describes them
/// (the parsing is [`parse`]'s; a test holds the two together).
#[allow(dead_code)] // Described, never built.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// Window length in days.
    #[param(nullable = false, minimum = 1, maximum = 3650, default = 7)]
    days: Option<u32>,
    /// Days between the window's end and `as_of`.
    #[param(nullable = false, minimum = 0, maximum = 3650, default = 0)]
    offset: Option<u32>,
    /// The instant asked about (RFC 3339); now when missing. The windows it implies
    /// must lie within the years 0000-9999.
    #[param(nullable = false)]
    as_of: Option<DateTime<Utc>>,
    /// One service; all when missing.
    #[param(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    service: Option<String>,
    /// The environment.
    #[param(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$", default = "prod")]
    environment: Option<String>,
}

/// `/dora/trend`'s own parameter.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// Consecutive windows, oldest first.
    #[param(nullable = false, minimum = 1, maximum = 104, default = 12)]
    windows: Option<u32>,
}

/// The `limit` of `/dora/failures` and `/alerts`.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Most items listed.
    #[param(nullable = false, minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
}

/// `/dashboard`'s parameters: its form sends `service=` for all services.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// Window length in days.
    #[param(nullable = false, minimum = 1, maximum = 3650, default = 7)]
    days: Option<u32>,
    /// The instant asked about (RFC 3339); now when missing.
    #[param(nullable = false)]
    as_of: Option<DateTime<Utc>>,
    /// One service; all when missing or empty.
    #[param(nullable = false, pattern = "^[A-Za-z0-9_-]{0,64}$")]
    service: Option<String>,
    /// The environment.
    #[param(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$", default = "prod")]
    environment: Option<String>,
}

/// A parsed query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The window and scope.
    pub query: MetricsQuery,
    /// `windows` (1-104, default 12), for the trend.
    pub windows: u32,
    /// `limit` (1-1000, default 100), for the failures.
    pub limit: u32,
}

/// Default number of trend windows.
pub const DEFAULT_WINDOWS: u32 = 12;
/// Default number of failures listed.
pub const DEFAULT_LIMIT: u32 = 100;

pub(crate) fn bad(param: &str, message: impl Into<String>) -> Error {
    Error::BadParam {
        param: param.to_owned(),
        message: message.into(),
    }
}

/// Parses `raw` for a route taking the parameters `accepted`; `now` is the default
/// `as_of`.
pub fn parse(raw: &str, now: DateTime<Utc>, accepted: &[&str]) -> Result<Params> {
    parse_pairs(form_urlencoded::parse(raw.as_bytes()), now, accepted)
}

/// [`parse`] for the dashboard's form: its service field sends `service=` when left
/// empty, for all services, which is read as no `service`.
pub fn parse_form(raw: &str, now: DateTime<Utc>, accepted: &[&str]) -> Result<Params> {
    parse_pairs(
        form_urlencoded::parse(raw.as_bytes())
            .filter(|(name, value)| !(name == "service" && value.is_empty())),
        now,
        accepted,
    )
}

fn parse_pairs<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    now: DateTime<Utc>,
    accepted: &[&str],
) -> Result<Params> {
    let mut params = Params {
        query: MetricsQuery {
            days: 7,
            offset: 0,
            as_of: now,
            service: None,
            environment: "prod".to_owned(),
        },
        windows: DEFAULT_WINDOWS,
        limit: DEFAULT_LIMIT,
    };
    let query = &mut params.query;
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in pairs {
        if !accepted.contains(&name.as_ref()) {
            return Err(bad(
                &name,
                format!(
                    "unknown parameter `{name}`; the parameters are {}",
                    accepted.join(", ")
                ),
            ));
        }
        if seen.iter().any(|s| *s == name) {
            return Err(bad(&name, format!("`{name}` is given more than once")));
        }
        seen.push(name.to_string());
        match name.as_ref() {
            "days" => query.days = ranged(&name, &value, 1, 3650)?,
            "offset" => query.offset = ranged(&name, &value, 0, 3650)?,
            "as_of" => {
                query.as_of = DateTime::parse_from_rfc3339(&value)
                    .map_err(|e| bad("as_of", format!("`as_of` must be an RFC 3339 time such as 2026-03-16T00:00:00Z; `{value}`: {e}")))?
                    .with_timezone(&Utc)
            }
            "service" => query.service = Some(token(&name, &value)?),
            "environment" => query.environment = token(&name, &value)?,
            "windows" => params.windows = ranged(&name, &value, 1, 104)?,
            "limit" => params.limit = ranged(&name, &value, 1, 1000)?,
            other => unreachable!("`{other}` is accepted but not parsed"),
        }
    }
    // The dashboard draws a trend of its own; the other routes answer `windows` (1
    // unless they take it).
    let windows = if accepted.contains(&"windows") {
        params.windows
    } else if accepted == DASHBOARD {
        crate::dashboard::TREND_WINDOWS
    } else {
        1
    };
    writable(&params.query, windows)?;
    Ok(params)
}

/// Refuses a query whose windows reach outside the years 0000-9999: the answer's
/// times are RFC 3339, which cannot write another year (schemathesis found `/dora/trend`
/// answering `-0317-07-30T...` for an `as_of` in year 8).
fn writable(query: &MetricsQuery, windows: u32) -> Result<()> {
    // 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
    const FIRST: i64 = -62_167_219_200;
    const AFTER_LAST: i64 = 253_402_300_800;
    let back = i64::from(query.offset) + i64::from(query.days) * i64::from(windows);
    let earliest = (query.as_of - TimeDelta::days(back)).timestamp();
    let latest = query.as_of.timestamp();
    if earliest < FIRST || latest >= AFTER_LAST {
        return Err(bad(
            "as_of",
            format!(
                "`as_of` {} with these days, offset and windows reaches outside the years \
                 0000-9999, the only ones an RFC 3339 time can hold",
                query.as_of.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

fn ranged(name: &str, value: &str, min: u32, max: u32) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(
            name,
            format!("`{name}` must be a whole number from {min} to {max}; got `{value}`"),
        )),
    }
}

/// The event's own rule for `service` and `environment`.
fn token(name: &str, value: &str) -> Result<String> {
    dora_event::subject_token(name, value).map_err(|e| bad(name, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-03-16T00:00:00Z".parse().unwrap()
    }

    fn param_of(raw: &str, accepted: &[&str]) -> String {
        match parse(raw, now(), accepted) {
            Err(Error::BadParam { param, .. }) => param,
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn route_parameters() {
        let p = parse("windows=104&days=30", now(), TREND).unwrap();
        assert_eq!((p.windows, p.query.days, p.limit), (104, 30, DEFAULT_LIMIT));
        let p = parse("limit=1", now(), FAILURES).unwrap();
        assert_eq!((p.windows, p.limit), (DEFAULT_WINDOWS, 1));
        for (raw, accepted, param) in [
            ("windows=0", TREND, "windows"),
            ("windows=105", TREND, "windows"),
            ("windows=12&windows=12", TREND, "windows"),
            ("limit=0", FAILURES, "limit"),
            ("limit=1001", FAILURES, "limit"),
            ("windows=3", DORA, "windows"),
            ("windows=3", FAILURES, "windows"),
            ("limit=3", TREND, "limit"),
            ("offset=7", DASHBOARD, "offset"),
            ("window=3", TREND, "window"),
        ] {
            assert_eq!(param_of(raw, accepted), param, "{raw}");
        }
    }

    fn described<P: utoipa::IntoParams>() -> Vec<String> {
        P::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    #[test]
    fn the_document_names_the_parameters_each_route_parses() {
        let window = described::<WindowQuery>();
        let trend = [window.clone(), described::<TrendQuery>()].concat();
        let failures = [window.clone(), described::<LimitQuery>()].concat();
        for (doc, parsed) in [
            (window, DORA),
            (trend, TREND),
            (failures, FAILURES),
            (described::<DashboardQuery>(), DASHBOARD),
            (described::<LimitQuery>(), &["limit"][..]),
        ] {
            assert_eq!(doc, parsed);
        }
    }

    #[test]
    fn windows_outside_the_years_rfc_3339_can_write_are_refused() {
        for (raw, accepted) in [
            // Found by schemathesis: a trend from year 8 back to year -317.
            (
                "days=2947&windows=40&as_of=0008-12-25T00:32:55Z&offset=972",
                TREND,
            ),
            ("as_of=0000-01-01T00:00:00Z", DORA),
            ("as_of=0000-01-01T00:00:00%2B01:00", DORA),
            ("as_of=9999-12-31T23:00:00-05:00", FAILURES),
            ("as_of=0001-01-01T00:00:00Z&days=40", DASHBOARD),
        ] {
            assert_eq!(param_of(raw, accepted), "as_of", "{raw}");
        }
        for (raw, accepted) in [
            ("as_of=0000-01-08T00:00:00Z", DORA),
            ("as_of=9999-12-31T23:59:59Z", DORA),
            ("as_of=0001-01-01T00:00:00Z&days=40", DORA),
        ] {
            assert!(parse(raw, now(), accepted).is_ok(), "{raw}");
        }
    }

    #[test]
    fn the_form_sends_an_empty_service_for_all() {
        assert_eq!(
            parse_form("service=&days=7", now(), DASHBOARD)
                .unwrap()
                .query
                .service,
            None
        );
        assert_eq!(param_of("service=", DORA), "service");
        // Only the empty service: a named one is kept, and another empty parameter is
        // still refused by name.
        assert_eq!(
            parse_form("service=api&days=7", now(), DASHBOARD)
                .unwrap()
                .query
                .service
                .as_deref(),
            Some("api")
        );
        match parse_form("service=&days=", now(), DASHBOARD) {
            Err(Error::BadParam { param, .. }) => assert_eq!(param, "days"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_parameters_list_the_accepted_ones() {
        match parse("offset=1", now(), DASHBOARD) {
            Err(Error::BadParam { message, .. }) => {
                assert!(
                    message.contains("days, as_of, service, environment"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
