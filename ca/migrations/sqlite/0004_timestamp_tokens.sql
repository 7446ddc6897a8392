-- Every time-stamp token issued: what was stamped, when, for whom.
CREATE TABLE timestamp_tokens (
    serial TEXT PRIMARY KEY,
    gen_time_ms BIGINT NOT NULL,
    policy TEXT NOT NULL,
    hash_algorithm TEXT NOT NULL,
    message_imprint TEXT NOT NULL,
    requester TEXT NOT NULL
);
CREATE INDEX timestamp_tokens_imprint ON timestamp_tokens (message_imprint);

-- Certificates of Kexin's own services (the TSA), with their key labels.
CREATE TABLE service_certificates (
    name TEXT PRIMARY KEY,
    key_label TEXT NOT NULL,
    certificate BLOB NOT NULL
);
