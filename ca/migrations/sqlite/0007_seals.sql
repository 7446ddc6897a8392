-- Electronic seals: an organization's seal, its image, and the key-store
-- key and certificate that sign with it.
CREATE TABLE seals (
    name TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    uscc TEXT,
    kind TEXT NOT NULL,
    image BLOB NOT NULL,
    key_label TEXT NOT NULL,
    certificate_serial TEXT NOT NULL REFERENCES certificates (serial),
    -- active or suspended; a revoked certificate revokes the seal.
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Who may apply a seal besides the seal administrators.
CREATE TABLE seal_users (
    seal TEXT NOT NULL REFERENCES seals (name),
    principal TEXT NOT NULL,
    PRIMARY KEY (seal, principal)
);
