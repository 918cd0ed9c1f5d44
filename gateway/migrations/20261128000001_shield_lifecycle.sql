-- The shield lifecycle: a request by one person, approval by a shield officer who is someone else, lifting, and
-- overrides that open one shielded child to one user for a short time. Every approval, lift and review is kept.

CREATE TABLE shield_requests (
    id TEXT PRIMARY KEY,
    child_id TEXT NOT NULL REFERENCES children (id),
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved')),
    decided_by TEXT,
    decided_at TEXT
);
CREATE INDEX shield_requests_pending ON shield_requests (status, requested_at);

CREATE TABLE shield_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    child_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('approved', 'lifted')),
    by_user TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX shield_history_by_child ON shield_history (child_id);

CREATE TABLE shield_overrides (
    id TEXT PRIMARY KEY,
    child_id TEXT NOT NULL REFERENCES children (id),
    user_id TEXT NOT NULL,
    justification TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX shield_overrides_by_user ON shield_overrides (user_id, child_id, expires_at);
CREATE INDEX shield_overrides_by_time ON shield_overrides (created_at);
CREATE INDEX shields_by_review ON shields (review_due);
