-- ACME external account binding (RFC 8555 §7.3.4): a key the RA hands a
-- registered system so that only it can open an ACME account. The HMAC
-- key is erased when an account binds it; a key binds one account.
CREATE TABLE acme_external_accounts (
    kid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hmac_key TEXT NOT NULL,
    account_id TEXT REFERENCES acme_accounts (id),
    created_at BIGINT NOT NULL
);
