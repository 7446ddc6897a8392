-- The token log is written for every token and read to prove one: by its
-- serial, the primary key, which begins with the issue time, so that
-- inserts append at the index's right edge. An index on the imprint, a
-- hash, took an insert at a random page for every token: with distinct
-- documents it tripled the cost of each logged batch (SQLite, 16 tokens
-- a batch: ~390 -> ~130 us of CPU). Finding a document's tokens is a scan,
-- rare enough to pay for then.
DROP INDEX timestamp_tokens_imprint;
