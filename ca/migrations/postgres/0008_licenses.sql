-- Electronic licenses (电子证照) issued under a seal: the registry that a
-- verifier asks whether a license still stands.
CREATE TABLE licenses (
    number TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    holder TEXT NOT NULL,
    authority TEXT NOT NULL,
    seal TEXT NOT NULL REFERENCES seals (name),
    valid_from TEXT NOT NULL,
    valid_until TEXT,
    -- JSON: every field of the license as issued.
    data TEXT NOT NULL,
    -- SHA-256 of the signed QR payload.
    payload_digest TEXT NOT NULL,
    status TEXT NOT NULL,
    revoked_at BIGINT,
    revocation_reason TEXT,
    issued_at BIGINT NOT NULL
);
