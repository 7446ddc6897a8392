-- Earlier certificates of seals, renewed since: documents and licenses
-- sealed before a renewal still name their seal when verified.
CREATE TABLE seal_certificates (
    serial TEXT PRIMARY KEY,
    seal TEXT NOT NULL
);
