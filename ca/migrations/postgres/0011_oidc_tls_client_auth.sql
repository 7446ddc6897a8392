-- RFC 8705: a confidential client may authenticate with the TLS client
-- certificate whose subject is recorded here (issued by the systems CA).
ALTER TABLE oidc_clients ADD COLUMN tls_client_auth_subject_dn TEXT;
