-- The distinct children each user or API client was shown within the quota's window: the bulk-download quota, kept
-- where every gateway sharing the store counts the same views. A row is written in the same transaction as the
-- audit record of the answer that showed the child, and removed once it has left the window.
CREATE TABLE child_views (
    principal TEXT NOT NULL,
    child_id TEXT NOT NULL,
    -- When the child was first shown to the principal within the window, in milliseconds since the Unix epoch.
    first_at INTEGER NOT NULL,
    PRIMARY KEY (principal, child_id)
);
CREATE INDEX child_views_by_time ON child_views (first_at);
