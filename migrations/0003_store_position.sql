-- The store's own position in the stream, so that a store which goes back in time (a
-- restore from a backup, a failover to a replica that missed commits, an empty
-- database) is noticed at start and the events it lost are read again, instead of
-- being taken as done because the JetStream consumer acked them.
--
-- One row. `store_id` names this store for good: it is made once, here, kept by a
-- backup and its restore, and copied by replay into the store it rebuilds; the
-- projector's default consumer is named after it, so two stores never share one.
CREATE TABLE store_position (
    one_row  boolean PRIMARY KEY DEFAULT true CHECK (one_row),
    store_id uuid    NOT NULL DEFAULT gen_random_uuid(),
    -- The stream this store is derived from; set by the first projector to follow one.
    stream   text,
    -- The highest stream sequence written, moved forward in each batch's transaction.
    last_seq bigint  NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
);

-- A store made before this migration starts from what it holds, so an upgrade does not
-- read the whole stream again.
INSERT INTO store_position (last_seq)
SELECT greatest(
    (SELECT coalesce(max(stream_seq), 0) FROM events),
    (SELECT coalesce(max(stream_seq), 0) FROM rejected_events));
