-- The rework rate (CONTRACT.md section 5) counts a window's attempts made while an
-- incident of their service ran, starting from the incidents running in the window:
-- those opened in it, and those running at its start (a stab into the GiST index of
-- migration 0009). For all services the first are a range of `incident_facts_opened`
-- (environment, opened_at); for one service that range holds every service's incidents
-- of the window (30k for 90 days at 10M events), to keep its few. This index keys them
-- by service first, as migration 0007 does for the closes.
CREATE INDEX incident_facts_service_opened ON incident_facts (environment, service, opened_at)
    INCLUDE (closed_at);
