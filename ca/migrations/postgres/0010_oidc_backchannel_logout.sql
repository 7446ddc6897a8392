-- OpenID Connect Back-Channel Logout: where Kexin posts a logout token when
-- an official's session ends.
ALTER TABLE oidc_clients ADD COLUMN backchannel_logout_uri TEXT;
