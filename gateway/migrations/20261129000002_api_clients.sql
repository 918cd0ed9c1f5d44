-- Partner agencies' API clients are accounts too: authorised by their organisation's authoriser, under a data-sharing
-- agreement (its reference and expiry in the clearance columns), with scopes and quotas of their own. Their tokens
-- come from the client-credentials grant.
ALTER TABLE accounts ADD COLUMN kind TEXT NOT NULL DEFAULT 'user';
-- JSON array of scope names; null for a user.
ALTER TABLE accounts ADD COLUMN scopes TEXT;
-- A client's own quotas; null for the gateway's.
ALTER TABLE accounts ADD COLUMN searches_per_minute INTEGER;
ALTER TABLE accounts ADD COLUMN children_per_hour INTEGER;
