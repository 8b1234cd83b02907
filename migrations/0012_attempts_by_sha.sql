-- The attempts index leads with the sha instead of the service.
--
-- `deploy_facts_attempts` serves the live recompute, which always names a service,
-- environment and sha by equality (then a time range), so the order of those three
-- columns changes nothing for a lookup. It changes what building the index costs: a
-- sort compares the first column's leading 8 bytes before anything else (abbreviated
-- keys), and services often share a prefix (`service-`, `payments-`), environments are
-- nearly all `prod`, while shas are hex and differ in their first bytes. On the 10M-event
-- benchmark's store (9M attempts, one build, maintenance_work_mem 512 MB) the old order
-- took 13.3 s and this one 6.5 s; during `dora-projector replay`, beside the other
-- builds, the old one was the longest of all (37 s).
--
-- On an existing store this rebuilds one index under lock: about 10 s for 9M attempts
-- here. `dora-projector replay` builds the new store with it instead.
DROP INDEX deploy_facts_attempts;
CREATE INDEX deploy_facts_attempts ON deploy_facts (git_sha, service, environment, occurred_at, stream_seq);
