-- The live recompute's probes follow the contract's tie order (CONTRACT.md section 5:
-- among events at one instant, the stream decides), so that "the one just before" or
-- "the first at or after" is one index probe however many events share the instant.
--
-- Ordered by time alone, each probe read every entry of its instant and sorted them by
-- stream sequence: a history stamped with one time (an import cut to the day, a tool
-- that stamps a release's events with one time) made the batch's recompute read the
-- whole instant once per new event. Measured on 60,000 deploys of one service at one
-- instant, posted in arrays: 54,070 stored after 242 s, against 60,000 in 2.9 s when
-- each had its own second (figures after this change in the commit message).
--
-- - The failure markers (rollbacks, sha-carrying incident opens) of a service,
--   environment and sha in (time, stream) order: an attempt's earliest marker is the
--   first entry at or after its time. The sha first, as in the attempts index
--   (migration 0012), for the build's sake.
-- - A ref_id's closes in (time, stream) order: an incident's close is the first entry at
--   or after its open.
-- - A ref_id's incidents by opening time: a batch that changes a stretch of a ref_id's
--   incidents reads that stretch, not the ref_id's every incident.
--
-- On an existing store this rebuilds three indexes under lock, each over a small share
-- of the rows (the markers, the closes, the incidents; not timed on a large store).
-- `dora-projector replay` builds a fresh store with them instead.
DROP INDEX events_failure_markers;
CREATE INDEX events_failure_markers ON events (git_sha, service, environment, occurred_at, stream_seq)
    WHERE kind IN ('rollback', 'incident_opened') AND git_sha IS NOT NULL;
DROP INDEX events_incident_closes;
CREATE INDEX events_incident_closes ON events (ref_id, occurred_at, stream_seq)
    WHERE kind = 'incident_closed';
DROP INDEX incident_facts_ref;
CREATE INDEX incident_facts_ref ON incident_facts (ref_id, opened_at);
