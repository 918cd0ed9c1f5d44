-- The audit log: one record per operation, append-only and hash-chained. Each record's hash covers its fields and
-- the hash of the record before, so an edited, deleted or reordered record breaks the chain (`childgraph audit verify`).
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    organisation_id TEXT NOT NULL,
    roles TEXT NOT NULL,
    client TEXT,
    purpose TEXT NOT NULL,
    justification TEXT,
    operation TEXT NOT NULL,
    -- Gateway child ids, comma-separated: never a name or a search term.
    child_ids TEXT NOT NULL,
    shown TEXT NOT NULL,
    withheld TEXT NOT NULL,
    outcome TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_by_user ON audit_log (user_id, at);
