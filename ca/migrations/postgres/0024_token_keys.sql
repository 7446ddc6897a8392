-- When an SSO token signing key begins to sign. A key rotated in
-- (`kexin oidc rotate-key`) is published in the JWKS by every node from
-- its next check, and signs only from `signs_from`, by when every node
-- publishes it and cached JWKS have expired: a relying party finds the
-- key of every token in the JWKS of whichever node it asks. A key without
-- a row signs from the start.
CREATE TABLE token_keys (
    label TEXT PRIMARY KEY,
    signs_from BIGINT NOT NULL
);
