-- Heads of the audit chain signed with the CA-held audit key. A checkpoint
-- pins everything up to its entry: editing, deleting or truncating past it
-- is detected even by someone who recomputes the whole hash chain.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    key_label TEXT NOT NULL,
    signature_algorithm TEXT NOT NULL,
    signature BYTEA NOT NULL
);
