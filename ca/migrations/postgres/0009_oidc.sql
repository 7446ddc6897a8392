-- Single sign-on: registered client systems, one-time authorization codes
-- and refresh tokens (stored as SHA-256 hashes, never in the clear), and
-- access tokens revoked before they expire.
CREATE TABLE oidc_clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    -- JSON array, matched exactly.
    redirect_uris TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE oidc_codes (
    code_sha256 TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oidc_clients (client_id),
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- JSON: claims of the signed-in official.
    claims TEXT NOT NULL,
    session_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used BIGINT NOT NULL
);
CREATE TABLE oidc_refresh_tokens (
    token_sha256 TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES oidc_clients (client_id),
    subject TEXT NOT NULL,
    claims TEXT NOT NULL,
    scope TEXT NOT NULL,
    -- active, rotated or revoked
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_refresh_family ON oidc_refresh_tokens (family);
CREATE TABLE oidc_revoked_access (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
