-- Open incidents are counted at a window's end: the incidents never closed, and those
-- closed after that end. Both are found by an index range that grows with the recent
-- past, not with every incident ever opened: `incident_facts_closed` for the second,
-- and this partial index, which holds only the incidents not closed yet, for the first.
CREATE INDEX incident_facts_unclosed ON incident_facts (environment, opened_at)
    INCLUDE (service) WHERE closed_at IS NULL;
