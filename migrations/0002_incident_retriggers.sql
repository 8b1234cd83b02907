-- An incident runs from an incident_opened to the first incident_closed of its ref_id at
-- or after it; another open of that ref_id while it runs re-triggers it (CONTRACT.md
-- section 5). `incident_facts` now holds one row per incident, not per open, and the
-- projector walks a ref_id's opens in time order to find where incidents start. This
-- index finds the next open of a ref_id after a close.
CREATE INDEX events_incident_opens ON events (ref_id, occurred_at, stream_seq)
    WHERE kind = 'incident_opened';
