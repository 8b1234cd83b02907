-- The alert state and its outbox, in schema `dora_alerts`: dora-api migrates it at start.
-- It lives outside schema `dora` on purpose: replay rebuilds `dora` from the stream, and
-- what was already announced must survive that, or every firing scope would fire again.

-- One row per scope that ever fired: (metric, environment, service), where service ''
-- stands for all services together (a service name is never empty).
CREATE TABLE scopes (
    metric        text        NOT NULL CHECK (metric IN ('change_failure_rate', 'lead_time')),
    environment   text        NOT NULL,
    service       text        NOT NULL,
    firing        boolean     NOT NULL,
    -- When the current episode started (firing) or ended (not firing).
    changed_at    timestamptz NOT NULL,
    -- The last check that judged this scope, and the numbers it saw.
    checked_at    timestamptz NOT NULL,
    prior         jsonb       NOT NULL,
    current       jsonb       NOT NULL,
    episodes      integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (metric, environment, service)
);

-- The outbox: a message is inserted in the transaction that changes its scope's state,
-- then delivered by whichever replica claims it first (FOR UPDATE SKIP LOCKED).
CREATE TABLE messages (
    id              bigserial   PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('firing', 'recovered')),
    metric          text        NOT NULL,
    environment     text        NOT NULL,
    service         text        NOT NULL,
    -- The check's `now`, and the transaction's clock.
    evaluated_at    timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    text            text        NOT NULL,
    -- The whole Slack body, fixed when the message is decided.
    body            jsonb       NOT NULL,
    -- pending: not delivered yet (retried); delivered: Slack answered 2xx; logged: no
    -- webhook was set, so it went to the log; superseded: the scope recovered before its
    -- firing message could be delivered, so neither is sent (both stay recorded).
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'logged', 'superseded')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX messages_due ON messages (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX messages_scope ON messages (metric, environment, service, id);
