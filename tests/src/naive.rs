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

/// Time to restore and open incidents, pairing at query time.
pub const NAIVE_INCIDENTS: &str = r#"
WITH incidents AS (
    SELECT o.occurred_at AS opened,
           (SELECT c.occurred_at FROM events c
            WHERE c.kind = 'incident_closed' AND c.ref_id = o.ref_id AND c.occurred_at >= o.occurred_at
            ORDER BY c.occurred_at, c.stream_seq LIMIT 1) AS closed
    FROM events o
    WHERE o.kind = 'incident_opened' AND o.environment = $1 AND ($4::text IS NULL OR o.service = $4)
)
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed - opened)::float8)
           FILTER (WHERE closed >= $2 AND closed < $3),
       count(*) FILTER (WHERE closed >= $2 AND closed < $3),
       count(*) FILTER (WHERE opened < $3 AND (closed IS NULL OR closed >= $3))
FROM incidents
"#;

/// The index the naive attribution needs: the latest deploy of a service/env/sha.
pub const NAIVE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS events_naive_attempts ON events (service, environment, git_sha, occurred_at)";
