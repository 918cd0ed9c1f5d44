-- The gateway's own data. Child data stays in the sources: here are only links, shields, flags and accounts.

CREATE TABLE organisations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- The organisation as a source knows it, so that "a child of the user's own organisation" can be decided.
    source TEXT,
    source_org_id TEXT
);

CREATE TABLE accounts (
    user_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    -- JSON array of role names, as the policy names them.
    roles TEXT NOT NULL,
    phone TEXT,
    email TEXT,
    active INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE children (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- One row per source record: a record belongs to one child at a time, so a child keeps its id.
CREATE TABLE links (
    source TEXT NOT NULL,
    record_id TEXT NOT NULL,
    child_id TEXT NOT NULL REFERENCES children (id),
    score REAL NOT NULL,
    rule TEXT NOT NULL,
    linked_at TEXT NOT NULL,
    PRIMARY KEY (source, record_id)
);
CREATE INDEX links_by_child ON links (child_id);

CREATE TABLE shields (
    child_id TEXT PRIMARY KEY REFERENCES children (id),
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    review_due TEXT NOT NULL
);

CREATE TABLE flags (
    id TEXT PRIMARY KEY,
    child_id TEXT NOT NULL REFERENCES children (id),
    kind TEXT NOT NULL,
    note TEXT NOT NULL,
    raised_by TEXT NOT NULL REFERENCES accounts (user_id),
    raised_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    withdrawn_at TEXT
);
CREATE INDEX flags_by_child ON flags (child_id);
