-- Information shared outside the system, and why: the seventh golden rule of information sharing.
CREATE TABLE disclosures (
    id TEXT PRIMARY KEY,
    child_id TEXT NOT NULL REFERENCES children (id),
    recorded_by TEXT NOT NULL,
    organisation_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    lawful_basis TEXT NOT NULL,
    consent INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX disclosures_by_child ON disclosures (child_id);
ALTER TABLE flags ADD COLUMN withdrawn_by TEXT;
