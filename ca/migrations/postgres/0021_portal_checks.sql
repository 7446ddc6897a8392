-- Checks of the citizen verify portal per client (an IPv4 address or an
-- IPv6 /64) and minute (unix seconds / 60), so that every node of an
-- instance counts a client against one allowance. UNLOGGED: a count need
-- not survive a crash, and writes no WAL. Minutes past are deleted once a
-- minute.
CREATE UNLOGGED TABLE portal_checks (
    client TEXT NOT NULL,
    minute BIGINT NOT NULL,
    checks BIGINT NOT NULL,
    PRIMARY KEY (client, minute)
);
