-- The algorithm of a client's ID tokens: ES256 (default) or SM2.
ALTER TABLE oidc_clients ADD COLUMN id_token_alg TEXT;
