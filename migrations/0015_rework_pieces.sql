-- The rework rate (CONTRACT.md section 5) counts a window's attempts made while an
-- incident of their service ran. Counted at query time from the incidents (one count of
-- attempts per incident of the window), a 90-day window at 10M events made 33k index
-- probes: `/dora?days=90` 172 -> 421 ms p50, the dashboard 162 -> 495. So each
-- incident now carries its share of the count, kept by the projector.
--
-- Per service and environment, the incidents in (opened_at, open_event_id) order cut
-- the time they run into disjoint pieces: an incident's piece runs from its open, or
-- from where the incidents before it stopped running if that is later (`piece_from`),
-- to its close (never closed: 'infinity'), and is empty when the incidents before it
-- run past its close. `reach` is where this incident and those before it stop running
-- (the latest of their closes). `piece_count` is the number of the service's attempts
-- in the piece. An attempt started while an incident ran lies in exactly one piece, so
-- a window's rework is the stored counts of the pieces within it, plus a count of
-- attempts for the few pieces that cross its start or end.
--
-- On an existing store this fills the three columns in one statement (a count of
-- attempts per incident: 334k at 10M events) and rebuilds the incident indexes the
-- rework reads; `dora-projector replay` builds a fresh store with them instead.
ALTER TABLE incident_facts
    ADD COLUMN piece_from  timestamptz,
    ADD COLUMN reach       timestamptz,
    ADD COLUMN piece_count bigint NOT NULL DEFAULT 0;

UPDATE incident_facts f
SET piece_from = p.piece_from,
    reach = p.reach,
    piece_count = CASE WHEN p.piece_from < p.until THEN (
        SELECT count(*)
        FROM deploy_facts d
        WHERE d.environment = f.environment AND d.service = f.service
          AND d.occurred_at >= p.piece_from AND d.occurred_at < p.until
    ) ELSE 0 END
FROM (
    SELECT open_event_id, until, greatest(opened_at, before) AS piece_from,
           greatest(before, until) AS reach
    FROM (
        SELECT open_event_id, opened_at, coalesce(closed_at, 'infinity') AS until,
               max(coalesce(closed_at, 'infinity')) OVER (
                   PARTITION BY environment, service ORDER BY opened_at, open_event_id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
        FROM incident_facts
    ) ordered
) p
WHERE f.open_event_id = p.open_event_id;

-- A window's pieces, all services: the incidents opened in it, with what each adds.
DROP INDEX incident_facts_opened;
CREATE INDEX incident_facts_opened ON incident_facts (environment, opened_at)
    INCLUDE (service, closed_at, piece_from, piece_count);
-- One service's pieces, and the projector's walk over a service's incidents in order.
DROP INDEX incident_facts_service_opened;
CREATE INDEX incident_facts_service_opened
    ON incident_facts (environment, service, opened_at, open_event_id)
    INCLUDE (closed_at, piece_from, reach, piece_count);
-- The piece a new attempt falls in: the last non-empty piece of its service that starts
-- at or before it (non-empty pieces are disjoint, so at most one holds the attempt).
CREATE INDEX incident_facts_pieces ON incident_facts (environment, service, piece_from)
    INCLUDE (closed_at)
    WHERE piece_from < coalesce(closed_at, 'infinity');
