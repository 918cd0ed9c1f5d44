-- Merges and splits of children, proposed or done, with their reason. Links never move silently: when records that
-- already belong to different children come to score as one child, the store keeps them apart and records a proposed
-- merge here for a person to decide.
CREATE TABLE link_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('merge-proposed', 'merge', 'split')),
    -- The children concerned, sorted and comma-separated.
    child_ids TEXT NOT NULL,
    reason TEXT NOT NULL,
    rule TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (kind, child_ids)
);
