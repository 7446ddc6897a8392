-- Authorization codes, stored rather than held in one server's memory (so
-- that any node redeems a code any node issued, and a restart loses none),
-- beside their SSO sessions (kexin-identity's codes module). The key is
-- the code's issue time and a hash of it, never the code; a code is
-- deleted as it is redeemed, in the transaction that stores the refresh
-- token it gives. No other index: the key's order is the codes' issue
-- order, by which expired ones are deleted, and the codes of a session
-- that logs out are found by a scan of the few not yet redeemed.
CREATE TABLE oidc_codes (
    code_key TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    -- The PKCE S256 challenge.
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- JSON: claims of the signed-in official.
    claims TEXT NOT NULL,
    sid TEXT NOT NULL,
    expires_at BIGINT NOT NULL
) WITHOUT ROWID;
