-- Decisions are looked up by their id (warden audit lineage): the id beside
-- the entry, indexed where there is one.
ALTER TABLE audit_entries ADD COLUMN decision_id TEXT;
CREATE INDEX audit_entries_by_decision ON audit_entries (decision_id) WHERE decision_id IS NOT NULL;
