-- Production's deploy windows get an index of their own, keyed by time alone.
--
-- Every metric reads a window as a range of `deploy_facts_window` (environment,
-- occurred_at), and PostgreSQL 15's btree checks each entry of the range against every
-- key of the scan, so each of a 90-day window's 770k entries (10M-event benchmark) paid a
-- text comparison of its environment as well as its time, and carried the environment's
-- bytes. `prod` is the contract's default environment, the one the dashboard, the alerts
-- and DORA itself are about; its entries now hold no environment, and a scan of them
-- compares timestamps only. Every other environment keeps the old shape, minus prod's rows.
--
-- Measured on the 10M store (index-only scan counting a 90-day window, one core): 130 ms
-- on the old index, 87 ms on this one; through dora-api, `/dora?days=90` p50 107-123 ms
-- -> 93 ms, `/dora/trend` 101 -> 84 ms, `/dashboard` 157-161 -> 146 ms.
--
-- The metric queries name the environment as a parameter; dora-api plans each with its
-- values (plan_cache_mode = force_custom_plan), so the planner sees `environment = 'prod'`
-- and picks the first index, or `environment = 'staging'`, which implies `<> 'prod'`, and
-- picks the second. (A generic plan could use neither.)
CREATE INDEX deploy_facts_prod_window ON deploy_facts (occurred_at)
    INCLUDE (succeeded, lead_seconds, failed_at)
    WHERE environment = 'prod';
CREATE INDEX deploy_facts_other_window ON deploy_facts (environment, occurred_at)
    INCLUDE (succeeded, lead_seconds, failed_at)
    WHERE environment <> 'prod';
DROP INDEX deploy_facts_window;
