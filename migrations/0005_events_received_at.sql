-- The API's /readyz reports how old the newest event in the store is (max(received_at)),
-- at every probe: this index makes that one index lookup rather than a scan of the
-- whole log.
CREATE INDEX events_received_at ON events (received_at);
