-- ACME (RFC 8555): accounts by their key's JWK thumbprint, orders, and one
-- authorization with its http-01 challenge per identifier of an order.
CREATE TABLE acme_accounts (
    id TEXT PRIMARY KEY,
    -- RFC 7638 thumbprint (base64url SHA-256) of the account key.
    thumbprint TEXT NOT NULL UNIQUE,
    -- The key's RFC 7638 canonical JSON.
    jwk TEXT NOT NULL,
    -- JSON array of mailto: URLs.
    contact TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE acme_orders (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES acme_accounts (id),
    -- JSON array of DNS names, lowercase, sorted.
    identifiers TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    certificate_serial TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX acme_orders_by_account ON acme_orders (account_id);
CREATE TABLE acme_authorizations (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES acme_orders (id),
    identifier TEXT NOT NULL,
    token TEXT NOT NULL,
    -- pending, processing, valid or invalid: the http-01 challenge's
    -- status, which the authorization's follows.
    status TEXT NOT NULL,
    validated_at BIGINT,
    error TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX acme_authorizations_by_order ON acme_authorizations (order_id);
