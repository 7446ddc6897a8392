-- Checks of the citizen verify portal per client and minute. An SQLite
-- instance has one node, which counts in its own memory; the table keeps
-- the two backends' schemas alike (PostgreSQL's is UNLOGGED and used).
CREATE TABLE portal_checks (
    client TEXT NOT NULL,
    minute BIGINT NOT NULL,
    checks BIGINT NOT NULL,
    PRIMARY KEY (client, minute)
);
