-- Officers' console sessions (the binary's console::session module), in
-- the database rather than one node's memory, so that every node of an
-- instance honours them. The key is a SHA-256 of the session's cookie,
-- never the cookie itself; the CSRF token of its forms is another hash of
-- the cookie, stored nowhere. A session belongs to one client certificate
-- (serial) and ends at expires_at: the earlier of its last use plus the
-- idle time and its start plus the absolute lifetime.
CREATE TABLE console_sessions (
    session_key TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
