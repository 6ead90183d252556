-- An enforcement point's audience (the resource it serves, which every
-- decision it asks for checks the agent's token against) and the request
-- context fields it is trusted to report.
--
-- Points registered before this migration keep working as they did: no
-- audience, but not deliberately without one (no_audience false, which Warden
-- reports at start and in `warden pep list`), trusted for the source address
-- and the session as every enforcement point was.
ALTER TABLE enforcement_points ADD COLUMN audience TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcement_points ADD COLUMN no_audience BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE enforcement_points ADD COLUMN trust TEXT NOT NULL DEFAULT 'source_ip,session';
