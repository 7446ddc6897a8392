-- Certificate authorities this instance operates.
CREATE TABLE authorities (
    name TEXT PRIMARY KEY,
    parent TEXT,
    key_label TEXT NOT NULL,
    key_algorithm TEXT NOT NULL,
    signature_algorithm TEXT NOT NULL,
    certificate BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- Every certificate, recorded as 'pending' with its to-be-signed bytes
-- before the signature is made and completed to 'issued' after it.
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    profile TEXT NOT NULL,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    tbs BLOB NOT NULL,
    der BLOB,
    requested_at BIGINT NOT NULL,
    issued_at BIGINT,
    revoked_at BIGINT,
    revocation_reason INTEGER
);
CREATE INDEX certificates_issuer_status ON certificates (issuer, status);
CREATE INDEX certificates_subject ON certificates (subject);

-- Hash-chained audit trail: each row's hash covers the previous row's hash.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
