-- Accounts on the Child Link model: an authoriser of the user's organisation grants access with a clearance and
-- its expiry and the date training was completed; access lapses when the clearance expires or recertification is
-- missed. Accounts made before this carry no authorisation, so they are lapsed until an authoriser recertifies them.
ALTER TABLE accounts ADD COLUMN clearance_reference TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN clearance_expires TEXT NOT NULL DEFAULT '1970-01-01';
ALTER TABLE accounts ADD COLUMN training_completed TEXT NOT NULL DEFAULT '1970-01-01';
ALTER TABLE accounts ADD COLUMN authorised_by TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN authorised_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00Z';
ALTER TABLE accounts ADD COLUMN recertify_by TEXT NOT NULL DEFAULT '1970-01-01T00:00:00Z';
ALTER TABLE accounts ADD COLUMN revoked_by TEXT;
ALTER TABLE accounts ADD COLUMN revoked_at TEXT;
ALTER TABLE accounts ADD COLUMN revoke_reason TEXT;
CREATE INDEX accounts_by_organisation ON accounts (organisation_id);

-- The account an account action was about; null for every other operation.
ALTER TABLE audit_log ADD COLUMN subject TEXT;
