-- Each principal's views in time order. The writer counts a principal's children within the window, and finds the
-- oldest still in it, with every audit record it commits: this index answers both without reading the table, and
-- without sorting.
CREATE INDEX child_views_by_principal ON child_views (principal, first_at);
