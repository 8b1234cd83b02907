-- The rework rate (CONTRACT.md section 5) counts a window's attempts made while an
-- incident of their service ran. Counted at query time from the incidents (one count of
-- attempts per incident of the window), a 90-day window at 10M events made 18k index
-- probes, and the API answered in about twice the time it took without the rework rate.
-- So the projector now keeps the counts, in pieces of time.
--
-- Per service and environment, the incidents that open at one instant form a group,
-- running from that instant to the latest of their closes (`until`; 'infinity' while one
-- of them is not closed). In opening order the groups cut the time they run into
-- disjoint pieces: a group's piece runs from its instant, or from where the groups
-- before it stop running if that is later (`piece_from`), to its `until`, and is empty
-- when the groups before it run past that. `reach` is where this group and those before
-- it stop running. `attempts` counts the service's attempts in the piece. An attempt
-- started while an incident ran lies in exactly one piece, so a window's rework is the
-- stored counts of the pieces within it, plus one count for each piece crossing its
-- start or end.
--
-- Groups, not incidents: the incidents opened at one instant (an alert storm, an import
-- cut to the minute) share one piece, so a batch that adds to them recomputes one row,
-- whatever their number.
--
-- `piece_from` and `reach` are NULL only inside a batch's transaction, between a group's
-- change and the recompute of its piece.
CREATE TABLE rework_pieces (
    environment text COLLATE "C" NOT NULL,
    service     text COLLATE "C" NOT NULL,
    opened_at   timestamptz NOT NULL,
    until       timestamptz NOT NULL,
    piece_from  timestamptz,
    reach       timestamptz,
    attempts    bigint      NOT NULL DEFAULT 0,
    -- The projector's walk over a service's groups in order, and one service's window.
    PRIMARY KEY (environment, service, opened_at) INCLUDE (until, piece_from, reach, attempts)
);
-- Updated by most batches and read by index-only scans: vacuumed as the facts are
-- (migration 0006), so that the visibility map stays current.
ALTER TABLE rework_pieces SET (
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- Filled from the facts on an existing store (`dora-projector replay` runs the same
-- statement after its bulk load): a count of attempts per non-empty piece.
INSERT INTO rework_pieces (environment, service, opened_at, until, piece_from, reach, attempts)
SELECT environment, service, opened_at, until, piece_from, reach,
       CASE WHEN piece_from < until THEN (
           SELECT count(*)
           FROM deploy_facts d
           WHERE d.environment = g.environment AND d.service = g.service
             AND d.occurred_at >= g.piece_from AND d.occurred_at < g.until
       ) ELSE 0 END
FROM (
    SELECT environment, service, opened_at, until,
           greatest(opened_at, before) AS piece_from, greatest(before, until) AS reach
    FROM (
        SELECT environment, service, opened_at, until,
               max(until) OVER (PARTITION BY environment, service ORDER BY opened_at
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
        FROM (
            SELECT environment, service, opened_at, max(coalesce(closed_at, 'infinity')) AS until
            FROM incident_facts
            GROUP BY environment, service, opened_at
        ) groups
    ) ordered
) g;

-- A window's groups, all services: those opened in it, with what each adds.
CREATE INDEX rework_pieces_opened ON rework_pieces (environment, opened_at)
    INCLUDE (service, until, piece_from, attempts);
-- The groups running at a window's start: a stab into their ranges, as for the open
-- incidents (migration 0009).
CREATE INDEX rework_pieces_running ON rework_pieces
    USING gist (tstzrange(opened_at, until, '(]')) INCLUDE (environment, service);
-- The piece a new attempt falls in: the last non-empty piece of its service that starts
-- at or before it (non-empty pieces are disjoint, so at most one holds the attempt).
CREATE INDEX rework_pieces_piece ON rework_pieces (environment, service, piece_from)
    INCLUDE (until)
    WHERE piece_from < until;
