-- One row that every audit append updates first: the update takes the
-- write lock (SQLite) or the row lock (PostgreSQL) before the head is read,
-- so concurrent appenders queue instead of failing and retrying.
CREATE TABLE audit_lock (id INTEGER PRIMARY KEY, appends BIGINT NOT NULL);
INSERT INTO audit_lock (id, appends) VALUES (1, 0);
