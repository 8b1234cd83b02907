-- The services of each environment that have a deploy attempt or an incident, for the
-- dashboard's service picker. Read from the facts it took a skip scan of the deploy
-- facts (one index probe per service) and a scan of every incident ever opened: 240 ms
-- at 10M events and 10k services, for a list that changes when a service is born. The
-- projector adds a row in the transaction that appends a service's first deploy or
-- incident; replay derives the table with the facts.
CREATE TABLE services (
    environment text NOT NULL,
    service     text NOT NULL,
    PRIMARY KEY (environment, service)
);
INSERT INTO services (environment, service)
SELECT environment, service FROM deploy_facts GROUP BY environment, service
UNION
SELECT environment, service FROM incident_facts GROUP BY environment, service;
