-- Registration requests: what an officer asked for, on what evidence, and
-- who decided. A request is issued only after the number of approvals its
-- profile demands, each by a different officer than the submitter.
CREATE TABLE requests (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    profile TEXT,
    status TEXT NOT NULL,
    -- JSON: subject attributes, names, CSR, target serial, reason.
    body TEXT NOT NULL,
    -- JSON: evidence type, officer's note, masked ID number.
    evidence TEXT NOT NULL,
    -- The full ID number, sealed under the key store's RA wrapping key.
    id_number_sealed BYTEA,
    approvals_required BIGINT NOT NULL,
    approver_role TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    decided_at BIGINT,
    -- JSON: serials issued, or why it failed.
    outcome TEXT
);
CREATE INDEX requests_status ON requests (status, submitted_at);

-- One decision per officer (by name, so a second certificate of the same
-- person cannot approve twice) per request.
CREATE TABLE request_decisions (
    request_id BIGINT NOT NULL REFERENCES requests (id),
    officer TEXT NOT NULL,
    decision TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, officer)
);

-- Encryption keys the KMC generated, sealed under its wrapping key.
CREATE TABLE escrowed_keys (
    serial TEXT PRIMARY KEY REFERENCES certificates (serial),
    key_algorithm TEXT NOT NULL,
    wrapping_key TEXT NOT NULL,
    sealed_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
