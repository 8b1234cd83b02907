-- The store. Every object is created unqualified, in the first schema of the
-- search_path: the live store is schema `dora`, and `dora-projector replay` applies these
-- same migrations to a fresh schema before renaming it into place.

-- The event log: one row per event id, appended by the projector and never changed.
CREATE TABLE events (
    id          text        PRIMARY KEY,  -- the idempotency key
    kind        text        NOT NULL
        CHECK (kind IN ('deploy', 'rollback', 'incident_opened', 'incident_closed')),
    service     text        NOT NULL,
    environment text        NOT NULL DEFAULT 'prod',
    git_sha     text,
    succeeded   boolean     NOT NULL DEFAULT true,  -- false only for a failed deploy attempt
    commit_at   timestamptz,
    ref_id      text,
    occurred_at timestamptz NOT NULL,
    source      text        NOT NULL,  -- ingest token name, or 'nats'
    stream_seq  bigint      NOT NULL,  -- JetStream sequence of the message that carried it
    received_at timestamptz NOT NULL,  -- when JetStream stored it
    CONSTRAINT deploys_and_rollbacks_name_a_sha
        CHECK (kind NOT IN ('deploy', 'rollback') OR git_sha IS NOT NULL),
    CONSTRAINT incidents_carry_a_ref_id
        CHECK (kind NOT IN ('incident_opened', 'incident_closed') OR ref_id IS NOT NULL),
    CONSTRAINT only_deploys_fail
        CHECK (kind = 'deploy' OR succeeded),
    CONSTRAINT commit_precedes_deploy
        CHECK (commit_at IS NULL OR (kind = 'deploy' AND commit_at <= occurred_at))
);

-- Append-only: a statement-level trigger refuses every UPDATE, DELETE and TRUNCATE,
-- even one that would touch no row, so a mistaken script fails loudly.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING HINT = 'events are corrected by appending new events; definitions change by replay';
END
$$;
CREATE TRIGGER events_are_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Finds the rollbacks and sha-carrying incidents that name a service/environment/sha.
CREATE INDEX events_failure_markers ON events (service, environment, git_sha, occurred_at)
    WHERE kind IN ('rollback', 'incident_opened') AND git_sha IS NOT NULL;
-- Finds the first close of an incident after its open.
CREATE INDEX events_incident_closes ON events (ref_id, occurred_at)
    WHERE kind = 'incident_closed';
-- No (kind, environment, occurred_at) index: the metrics range-scan the facts tables
-- below, and every index here costs each append.

-- Per-attempt facts, one row per deploy event, derived from the log by the projector in
-- the transaction that appends the event, and rebuilt by replay. They hold no metric,
-- only what the contract's definitions say about one attempt, so a window is a range scan.
CREATE TABLE deploy_facts (
    event_id     text        PRIMARY KEY,  -- events.id of the deploy
    service      text        NOT NULL,
    environment  text        NOT NULL,
    git_sha      text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    stream_seq   bigint      NOT NULL,     -- breaks ties between attempts at the same instant
    succeeded    boolean     NOT NULL,
    lead_seconds double precision,         -- occurred_at - commit_at, when commit_at was sent
    -- The earliest time this attempt is known to have failed: its own occurred_at when it
    -- did not succeed, else the earliest rollback or sha-carrying incident that marks it.
    -- A window's failures "as of" T are the rows with failed_at <= T.
    failed_at    timestamptz,
    failed_by    text                      -- the event that failed it (itself, a rollback or an incident)
);
CREATE INDEX deploy_facts_window ON deploy_facts (environment, occurred_at)
    INCLUDE (succeeded, lead_seconds, failed_at);
CREATE INDEX deploy_facts_service_window ON deploy_facts (environment, service, occurred_at)
    INCLUDE (succeeded, lead_seconds, failed_at);
CREATE INDEX deploy_facts_attempts ON deploy_facts (service, environment, git_sha, occurred_at, stream_seq);

-- Per-incident facts, one row per incident_opened, paired with the first close at or
-- after it that carries the same ref_id.
CREATE TABLE incident_facts (
    open_event_id  text        PRIMARY KEY,
    ref_id         text        NOT NULL,
    service        text        NOT NULL,
    environment    text        NOT NULL,
    opened_at      timestamptz NOT NULL,
    closed_at      timestamptz,
    close_event_id text
);
CREATE INDEX incident_facts_closed ON incident_facts (environment, closed_at)
    INCLUDE (service, opened_at);
CREATE INDEX incident_facts_opened ON incident_facts (environment, opened_at)
    INCLUDE (service, closed_at);
CREATE INDEX incident_facts_ref ON incident_facts (ref_id);

-- Messages from the stream that failed validation: kept with the reason, never dropped.
CREATE TABLE rejected_events (
    stream_seq  bigint      PRIMARY KEY,
    subject     text        NOT NULL,
    payload     bytea       NOT NULL,
    reason      text        NOT NULL,
    field       text,
    received_at timestamptz NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);
