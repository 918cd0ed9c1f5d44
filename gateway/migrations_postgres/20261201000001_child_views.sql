-- The distinct children each user or API client was shown within the quota's window: the bulk-download quota, kept
-- where every gateway sharing the store counts the same views. A row is written in the same transaction as the
-- audit record of the answer that showed the child (under the audit log's lock, so gateways count in turn), and
-- removed once it has left the window.
CREATE TABLE child_views (
    principal TEXT COLLATE "C" NOT NULL,
    child_id TEXT COLLATE "C" NOT NULL,
    -- When the child was first shown to the principal within the window, in milliseconds since the Unix epoch.
    first_at BIGINT NOT NULL,
    PRIMARY KEY (principal, child_id)
);
CREATE INDEX child_views_by_time ON child_views (first_at);
