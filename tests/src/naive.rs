//! The contract's metric definitions (CONTRACT.md section 5) as naive SQL over the raw
//! log: the oracle the tests compare dora's answers with, and the baseline the metrics
//! benchmark measures (with the index `NAIVE_INDEX` it needs to finish in time). Parameters: `$1` environment, `$2` start, `$3` end, then
//! `NAIVE_DEPLOYS`: `$4` as_of, `$5` service; `NAIVE_INCIDENTS` and `NAIVE_REWORK`: `$4`
//! service.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Deploy attempts: frequency, lead time and change failure rate, every rollback and
/// incident attributed at query time.
pub const NAIVE_DEPLOYS: &str = r#"
WITH attempts AS (
    SELECT * FROM events
    WHERE kind = 'deploy' AND environment = $1 AND ($5::text IS NULL OR service = $5)
      AND occurred_at >= $2 AND occurred_at < $3
),
marked AS (
    SELECT (SELECT d.id FROM events d
            WHERE d.kind = 'deploy' AND d.service = m.service AND d.environment = m.environment
              AND d.git_sha = m.git_sha AND d.occurred_at <= m.occurred_at
            ORDER BY d.occurred_at DESC, d.stream_seq DESC LIMIT 1) AS id
    FROM events m
    WHERE m.kind IN ('rollback', 'incident_opened') AND m.git_sha IS NOT NULL AND m.occurred_at <= $4
      -- A marker before the window can only mark an attempt before it.
      AND m.occurred_at >= $2
)
SELECT count(*) FILTER (WHERE succeeded),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM occurred_at - commit_at)::float8)
           FILTER (WHERE succeeded AND commit_at IS NOT NULL),
       count(commit_at) FILTER (WHERE succeeded),
       count(*) FILTER (WHERE NOT succeeded OR id IN (SELECT id FROM marked)),
       count(*)
FROM attempts
"#;

/// The incidents of the log, paired at query time, as the CTE `incidents` (`ref_id`,
/// `opened`, `closed`, `service`, `environment`) that the queries below select from.
/// Each ref_id's events are walked in order (time, then opens before closes, then stream): an open with no
/// incident running starts one, the first close at or after its start ends it, and opens
/// in between (up to the close's instant) re-trigger it. A close with nothing running is
/// ignored. Opens go before closes of the same instant because "at or after" is by time:
/// a close earlier in the stream than an open at its instant still ends that open's
/// incident (0 s), and an open at a close's instant re-triggers the incident it ends.
macro_rules! incidents {
    () => {
        r#"
WITH RECURSIVE ordered AS (
    SELECT ref_id, kind, occurred_at, service, environment,
           row_number() OVER (PARTITION BY ref_id
                              ORDER BY occurred_at, kind = 'incident_closed', stream_seq) AS n
    FROM events
    WHERE kind IN ('incident_opened', 'incident_closed')
),
walk AS (
    -- state per ref_id after each event: the running incident's start (or null)
    SELECT ref_id, n, occurred_at,
           CASE WHEN kind = 'incident_opened' THEN occurred_at END AS started,
           CASE WHEN kind = 'incident_opened' THEN service END AS service,
           CASE WHEN kind = 'incident_opened' THEN environment END AS environment,
           NULL::timestamptz AS ended
    FROM ordered WHERE n = 1
  UNION ALL
    SELECT o.ref_id, o.n, o.occurred_at,
           CASE WHEN o.starts THEN o.occurred_at ELSE w.started END,
           CASE WHEN o.starts THEN o.service ELSE w.service END,
           CASE WHEN o.starts THEN o.environment ELSE w.environment END,
           CASE
             WHEN o.starts THEN NULL
             WHEN o.kind = 'incident_closed' AND w.started IS NOT NULL AND w.ended IS NULL
               THEN o.occurred_at
             ELSE w.ended
           END
    FROM walk w
    CROSS JOIN LATERAL (
        -- an open starts an incident when none has started, or the last one closed
        -- strictly before it; any other open re-triggers the current one
        SELECT x.*, (x.kind = 'incident_opened'
                     AND (w.started IS NULL OR (w.ended IS NOT NULL AND x.occurred_at > w.ended))) AS starts
        FROM ordered x WHERE x.ref_id = w.ref_id AND x.n = w.n + 1
    ) o
),
incidents AS (
    -- one row per incident: its start, and its close if one came
    SELECT ref_id, started AS opened, min(ended) AS closed,
           min(service) AS service, min(environment) AS environment
    FROM walk
    WHERE started IS NOT NULL
    GROUP BY ref_id, started
)
"#
    };
}

/// Time to restore and open incidents, pairing at query time (`incidents!`).
pub const NAIVE_INCIDENTS: &str = concat!(
    incidents!(),
    r#"
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed - opened)::float8)
           FILTER (WHERE closed >= $2 AND closed < $3),
       count(*) FILTER (WHERE closed >= $2 AND closed < $3),
       count(*) FILTER (WHERE opened < $3 AND (closed IS NULL OR closed >= $3))
FROM incidents
WHERE environment = $1 AND ($4::text IS NULL OR service = $4)
"#
);

/// Rework: the attempts of the window (as in `NAIVE_DEPLOYS`) that an incident of
/// their service and environment, paired as in `NAIVE_INCIDENTS`, was running at:
/// opened at or before the attempt, closed after it or not at all. Parameters as
/// `NAIVE_INCIDENTS`'.
pub const NAIVE_REWORK: &str = concat!(
    incidents!(),
    r#"
SELECT count(*)
FROM events d
WHERE d.kind = 'deploy' AND d.environment = $1 AND ($4::text IS NULL OR d.service = $4)
  AND d.occurred_at >= $2 AND d.occurred_at < $3
  AND EXISTS (SELECT 1 FROM incidents i
              WHERE i.service = d.service AND i.environment = d.environment
                AND i.opened <= d.occurred_at AND (i.closed IS NULL OR i.closed > d.occurred_at))
"#
);

/// The index the naive attribution needs: the latest deploy of a service/env/sha.
pub const NAIVE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS events_naive_attempts ON events (service, environment, git_sha, occurred_at)";

/// The contract's metrics (CONTRACT.md section 5) computed in plain Rust from the raw
/// events a test generated, in the order they arrived on the stream: no stored row, no
/// SQL and no code of dora's, its window arithmetic included. What dora answers for a
/// query must equal [`Oracle::numbers`] for it.
#[derive(Debug, Clone)]
pub struct Oracle {
    events: Vec<Raw>,
}

/// One generated event, read back from its JSON.
#[derive(Debug, Clone)]
struct Raw {
    id: String,
    kind: String,
    service: String,
    environment: String,
    git_sha: Option<String>,
    succeeded: bool,
    commit_at: Option<DateTime<Utc>>,
    ref_id: Option<String>,
    occurred_at: DateTime<Utc>,
    /// Position in the stream: the later, the higher.
    arrival: usize,
}

/// What the store's facts must hold for a log, row by row: the failure of each attempt
/// and each incident, each list ordered by its id (byte order, as the store's `"C"`
/// collation orders text).
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Per deploy attempt: its id, when it failed and the event that failed it (itself,
    /// or its earliest marker), or two `None`s.
    pub attempts: Vec<(String, Option<DateTime<Utc>>, Option<String>)>,
    /// Per incident: the open that started it, its ref_id, its opening time, and the
    /// close that ended it with that close's time, if one did.
    pub incidents: Vec<IncidentRow>,
}

/// One incident as `incident_facts` holds it: open id, ref_id, opened at, close id,
/// closed at.
pub type IncidentRow = (
    String,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// The numbers of one `/dora` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Numbers {
    /// Successful attempts in the window.
    pub deploys: i64,
    /// Median lead time in seconds, and its samples.
    pub lead: (Option<f64>, i64),
    /// Failed attempts, all attempts.
    pub failures: (i64, i64),
    /// Median time to restore in seconds, its samples, and the incidents open at the end.
    pub restore: (Option<f64>, i64, i64),
    /// Attempts made while an incident of their service ran (of `failures.1`).
    pub rework: i64,
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn instant(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    text(v, field).map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .unwrap_or_else(|e| panic!("{field} `{s}`: {e}"))
            .with_timezone(&Utc)
    })
}

/// Seconds between two instants, to the microsecond.
fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().expect("span fits") as f64 / 1e6
}

/// The interpolated median: the mean of the two middle values for an even count.
fn median(mut samples: Vec<f64>) -> Option<f64> {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(samples[n / 2]),
        _ => Some((samples[n / 2 - 1] + samples[n / 2]) / 2.0),
    }
}

impl Oracle {
    /// The log as it arrived: `arrived[0]` first. Every event must carry `occurred_at`.
    pub fn new(arrived: &[Value]) -> Oracle {
        let events = arrived
            .iter()
            .enumerate()
            .map(|(arrival, v)| Raw {
                id: text(v, "id").expect("id"),
                kind: text(v, "kind").expect("kind"),
                service: text(v, "service").expect("service"),
                environment: text(v, "environment").unwrap_or_else(|| "prod".to_owned()),
                git_sha: text(v, "git_sha"),
                succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(true),
                commit_at: instant(v, "commit_at"),
                ref_id: text(v, "ref_id"),
                occurred_at: instant(v, "occurred_at").expect("the oracle needs occurred_at"),
                arrival,
            })
            .collect();
        Oracle { events }
    }

    /// `[start, end)`: `end` is `offset` whole days of 86,400 s before `as_of`, `start`
    /// `days` such days before `end`.
    pub fn window(as_of: DateTime<Utc>, days: u32, offset: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = chrono::Duration::seconds(86_400);
        let end = as_of - day * offset as i32;
        (end - day * days as i32, end)
    }

    /// The numbers `/dora` must answer for this query.
    pub fn numbers(
        &self,
        environment: &str,
        service: Option<&str>,
        as_of: DateTime<Utc>,
        days: u32,
        offset: u32,
    ) -> Numbers {
        let (start, end) = Oracle::window(as_of, days, offset);
        let in_scope =
            |e: &Raw| e.environment == environment && service.is_none_or(|s| e.service == s);
        let inside = |t: DateTime<Utc>| start <= t && t < end;

        let attempts: Vec<&Raw> = self
            .events
            .iter()
            .filter(|e| e.kind == "deploy" && in_scope(e) && inside(e.occurred_at))
            .collect();
        let marked = self.marked(as_of);
        let lead: Vec<f64> = attempts
            .iter()
            .filter(|a| a.succeeded)
            .filter_map(|a| a.commit_at.map(|c| seconds(c, a.occurred_at)))
            .collect();
        let failed = attempts
            .iter()
            .filter(|a| !a.succeeded || marked.contains(&a.arrival))
            .count();

        let incidents: Vec<Incident> = self
            .incidents()
            .into_iter()
            .filter(|i| i.environment == environment && service.is_none_or(|s| i.service == s))
            .collect();
        let restored: Vec<f64> = incidents
            .iter()
            .filter_map(|i| {
                i.closed
                    .filter(|c| inside(*c))
                    .map(|c| seconds(i.opened, c))
            })
            .collect();
        let open = incidents
            .iter()
            .filter(|i| i.opened < end && i.closed.is_none_or(|c| c >= end))
            .count();
        // Running at the attempt: opened at or before it, not closed at or before it.
        // No `as_of` here: an attempt is before the window's end, so before `as_of`,
        // and a close after `as_of` is after the attempt either way.
        let rework = attempts
            .iter()
            .filter(|a| {
                incidents.iter().any(|i| {
                    i.service == a.service
                        && i.opened <= a.occurred_at
                        && i.closed.is_none_or(|c| c > a.occurred_at)
                })
            })
            .count();
        Numbers {
            deploys: attempts.iter().filter(|a| a.succeeded).count() as i64,
            lead: (median(lead.clone()), lead.len() as i64),
            failures: (failed as i64, attempts.len() as i64),
            restore: (median(restored.clone()), restored.len() as i64, open as i64),
            rework: rework as i64,
        }
    }

    /// The attempts (by arrival) a rollback or sha-carrying incident at or before
    /// `as_of` marks.
    fn marked(&self, as_of: DateTime<Utc>) -> Vec<usize> {
        self.marks()
            .into_iter()
            .filter(|(m, _)| m.occurred_at <= as_of)
            .map(|(_, d)| d.arrival)
            .collect()
    }

    /// Each rollback or sha-carrying incident with the attempt it marks: the latest
    /// attempt of its service/environment/sha at or before it, the later in the stream
    /// on a tie.
    fn marks(&self) -> Vec<(&Raw, &Raw)> {
        let mut marks = Vec::new();
        for m in self.events.iter().filter(|m| {
            (m.kind == "rollback" || m.kind == "incident_opened") && m.git_sha.is_some()
        }) {
            let latest = self
                .events
                .iter()
                .filter(|d| {
                    d.kind == "deploy"
                        && d.service == m.service
                        && d.environment == m.environment
                        && d.git_sha == m.git_sha
                        && d.occurred_at <= m.occurred_at
                })
                .max_by_key(|d| (d.occurred_at, d.arrival));
            if let Some(d) = latest {
                marks.push((m, d));
            }
        }
        marks
    }

    /// The facts the store must hold for the log, row by row. An attempt fails at its
    /// own time if it did not succeed, else at its earliest marker (by time, then the
    /// earlier in the stream).
    pub fn facts(&self) -> Facts {
        let marks = self.marks();
        let mut attempts: Vec<_> = self
            .events
            .iter()
            .filter(|d| d.kind == "deploy")
            .map(|d| {
                if !d.succeeded {
                    return (d.id.clone(), Some(d.occurred_at), Some(d.id.clone()));
                }
                let earliest = marks
                    .iter()
                    .filter(|(_, a)| a.arrival == d.arrival)
                    .map(|(m, _)| *m)
                    .min_by_key(|m| (m.occurred_at, m.arrival));
                (
                    d.id.clone(),
                    earliest.map(|m| m.occurred_at),
                    earliest.map(|m| m.id.clone()),
                )
            })
            .collect();
        attempts.sort();
        let mut incidents: Vec<IncidentRow> = self
            .incidents()
            .into_iter()
            .map(|i| (i.open_id, i.ref_id, i.opened, i.close_id, i.closed))
            .collect();
        incidents.sort();
        Facts {
            attempts,
            incidents,
        }
    }

    /// Every incident of the log. Per ref_id: the first open (by time, then arrival)
    /// starts one; it runs to the first close at or after that open (by time, then
    /// arrival); opens up to the close's instant re-trigger it; the first open strictly
    /// after the close starts the next. Closes with nothing running are ignored.
    fn incidents(&self) -> Vec<Incident> {
        let mut refs: Vec<&str> = self
            .events
            .iter()
            .filter_map(|e| e.ref_id.as_deref())
            .collect();
        refs.sort_unstable();
        refs.dedup();
        let mut out = Vec::new();
        for r in refs {
            let of_kind = |kind: &str| {
                let mut v: Vec<&Raw> = self
                    .events
                    .iter()
                    .filter(|e| e.kind == kind && e.ref_id.as_deref() == Some(r))
                    .collect();
                v.sort_by_key(|e| (e.occurred_at, e.arrival));
                v
            };
            let (opens, closes) = (of_kind("incident_opened"), of_kind("incident_closed"));
            let mut next = opens.first().copied();
            while let Some(open) = next {
                let close = closes.iter().find(|c| c.occurred_at >= open.occurred_at);
                out.push(Incident {
                    open_id: open.id.clone(),
                    ref_id: r.to_owned(),
                    service: open.service.clone(),
                    environment: open.environment.clone(),
                    opened: open.occurred_at,
                    close_id: close.map(|c| c.id.clone()),
                    closed: close.map(|c| c.occurred_at),
                });
                next = close.and_then(|c| {
                    opens
                        .iter()
                        .find(|o| o.occurred_at > c.occurred_at)
                        .copied()
                });
            }
        }
        out
    }
}

#[derive(Debug)]
struct Incident {
    open_id: String,
    ref_id: String,
    close_id: Option<String>,
    service: String,
    environment: String,
    opened: DateTime<Utc>,
    closed: Option<DateTime<Utc>>,
}
/// The groups of rework pieces (migration 0015) that differ from, or are missing from,
/// the ones derived here from scratch from the incident and deploy facts: each group's
/// latest close, the latest close of the incidents opened before it, and its piece's
/// attempts, each by a subquery over every row. Empty when the projector kept them right.
pub const NAIVE_PIECES: &str = r#"
WITH groups AS (
    SELECT environment, service, opened_at, max(coalesce(closed_at, 'infinity')) AS until
    FROM incident_facts
    GROUP BY environment, service, opened_at
),
want AS (
    SELECT g.environment, g.service, g.opened_at, g.until,
           greatest(g.opened_at, b.before) AS piece_from,
           greatest(b.before, g.until) AS reach,
           (SELECT count(*) FROM deploy_facts d
            WHERE d.environment = g.environment AND d.service = g.service
              AND d.occurred_at >= greatest(g.opened_at, b.before)
              AND d.occurred_at < g.until) AS attempts
    FROM groups g
    CROSS JOIN LATERAL (
        SELECT max(coalesce(i.closed_at, 'infinity')) AS before
        FROM incident_facts i
        WHERE i.environment = g.environment AND i.service = g.service
          AND i.opened_at < g.opened_at
    ) b
)
SELECT p.environment, p.service, p.opened_at, p.until, p.piece_from, p.reach, p.attempts,
       w.environment AS want_environment, w.opened_at AS want_opened_at, w.until AS want_until,
       w.piece_from AS want_from, w.reach AS want_reach, w.attempts AS want_attempts
FROM rework_pieces p
FULL JOIN want w USING (environment, service, opened_at)
WHERE (p.until, p.piece_from, p.reach, p.attempts)
      IS DISTINCT FROM (w.until, w.piece_from, w.reach, w.attempts)
"#;
