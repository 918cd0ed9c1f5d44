-- A proposed split: records linked to one child have come to score as different children. The links stand until a
-- person decides. SQLite cannot change a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE link_events_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('merge-proposed', 'split-proposed', 'merge', 'split')),
    -- The children concerned, sorted and comma-separated.
    child_ids TEXT NOT NULL,
    reason TEXT NOT NULL,
    rule TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (kind, child_ids)
);
INSERT INTO link_events_new (id, kind, child_ids, reason, rule, at)
    SELECT id, kind, child_ids, reason, rule, at FROM link_events;
DROP TABLE link_events;
ALTER TABLE link_events_new RENAME TO link_events;
