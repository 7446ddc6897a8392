-- Authorization codes live beside their SSO sessions, in memory
-- (kexin-identity's codes module): the table is no longer used.
DROP TABLE oidc_codes;
