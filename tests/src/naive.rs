//! The contract's metric definitions (CONTRACT.md section 5) as naive SQL over the raw
//! log: the oracle the tests compare dora's answers with, and the baseline the metrics
//! benchmark measures (with the index `NAIVE_INDEX` it needs to finish in time). Parameters: `$1` environment, `$2` start, `$3` end, then
//! `NAIVE_DEPLOYS`: `$4` as_of, `$5` service; `NAIVE_INCIDENTS`: `$4` service.

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

/// Time to restore and open incidents, pairing at query time. Each ref_id's events are
/// walked in order (time, then stream): an open with no incident running starts one, the
/// first close at or after its start ends it, and opens in between (up to the close's
/// instant) re-trigger it. A close with nothing running is ignored.
pub const NAIVE_INCIDENTS: &str = r#"
WITH RECURSIVE ordered AS (
    SELECT ref_id, kind, occurred_at, service, environment,
           row_number() OVER (PARTITION BY ref_id ORDER BY occurred_at, stream_seq) AS n
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
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed - opened)::float8)
           FILTER (WHERE closed >= $2 AND closed < $3),
       count(*) FILTER (WHERE closed >= $2 AND closed < $3),
       count(*) FILTER (WHERE opened < $3 AND (closed IS NULL OR closed >= $3))
FROM incidents
WHERE environment = $1 AND ($4::text IS NULL OR service = $4)
"#;

/// The index the naive attribution needs: the latest deploy of a service/env/sha.
pub const NAIVE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS events_naive_attempts ON events (service, environment, git_sha, occurred_at)";
