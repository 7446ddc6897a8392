-- SSO sessions, in the database rather than in the server's memory
-- (kexin-identity's sessions module). The key is the sid of the session's
-- cookie, never the cookie itself; it begins with the session's start
-- time, so that new sessions are stored together. A session ends at
-- expires_at: the earlier of its last use plus the idle time and its
-- start plus the absolute lifetime.
CREATE TABLE oidc_sessions (
    sid TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    -- JSON: claims of the signed-in official.
    claims TEXT NOT NULL,
    -- The systems that received a code in the session, told at logout:
    -- client ids (which have no spaces) separated by spaces.
    clients TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_sessions_expiry ON oidc_sessions (expires_at);
