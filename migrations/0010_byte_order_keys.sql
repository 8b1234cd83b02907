-- The store's text keys compare as bytes (collation "C"), not by the database's locale.
-- Nothing here is ordered for a person to read by the locale's rules: ids, services,
-- environments, shas and ref_ids are matched for equality and grouped, and where dora
-- orders by them it is code-point order, the order dora's own maps use. Under a libc
-- locale (even C.UTF-8, which PostgreSQL 15 does not recognise as C) every comparison is
-- a strcoll call and sorts cannot use abbreviated keys; under "C" they are memcmp. On
-- the 10M-event benchmark this is what the bulk path mostly does: the log's primary key,
-- the sorts that derive the facts and the facts' indexes.
--
-- For UTF-8 text, byte order is code-point order, so on a C.UTF-8 database nothing any
-- query returns changes order. Only the column's collation changes, not its type, so
-- PostgreSQL keeps the rows and rebuilds the indexes on these columns (a store with
-- millions of events takes about a minute here, under lock; `dora-projector replay`
-- builds a fresh store with these definitions instead).
ALTER TABLE events
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN service TYPE text COLLATE "C",
    ALTER COLUMN environment TYPE text COLLATE "C",
    ALTER COLUMN git_sha TYPE text COLLATE "C",
    ALTER COLUMN ref_id TYPE text COLLATE "C",
    ALTER COLUMN source TYPE text COLLATE "C";
ALTER TABLE deploy_facts
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN service TYPE text COLLATE "C",
    ALTER COLUMN environment TYPE text COLLATE "C",
    ALTER COLUMN git_sha TYPE text COLLATE "C",
    ALTER COLUMN failed_by TYPE text COLLATE "C";
ALTER TABLE incident_facts
    ALTER COLUMN open_event_id TYPE text COLLATE "C",
    ALTER COLUMN ref_id TYPE text COLLATE "C",
    ALTER COLUMN service TYPE text COLLATE "C",
    ALTER COLUMN environment TYPE text COLLATE "C",
    ALTER COLUMN close_event_id TYPE text COLLATE "C";
ALTER TABLE services
    ALTER COLUMN environment TYPE text COLLATE "C",
    ALTER COLUMN service TYPE text COLLATE "C";
