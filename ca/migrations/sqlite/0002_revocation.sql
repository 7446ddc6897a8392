ALTER TABLE certificates ADD COLUMN invalidity_date BIGINT;
CREATE INDEX certificates_revoked ON certificates (issuer, serial) WHERE status IN ('revoked', 'hold');

-- The newest CRL of each CA; `number` only ever grows.
CREATE TABLE crls (
    ca TEXT PRIMARY KEY,
    number BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der BLOB NOT NULL
);

-- Delegated OCSP responder of each CA.
CREATE TABLE ocsp_responders (
    ca TEXT PRIMARY KEY,
    key_label TEXT NOT NULL,
    certificate BLOB NOT NULL
);

-- Callers of the API: a client certificate serial mapped to a role.
CREATE TABLE principals (
    serial TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
