-- Which node renews a service certificate (an OCSP responder's, the
-- TSA's). Nodes sharing the database check at the same minutes; a claim,
-- one at a time until it lapses, keeps them from each issuing a renewal.
CREATE TABLE service_renewals (
    name TEXT PRIMARY KEY,
    claimed_until BIGINT NOT NULL
);
