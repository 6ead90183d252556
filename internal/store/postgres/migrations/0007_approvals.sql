-- Approval requests: one exact action (by its digest) waiting for, or
-- holding, the approvals policy asked for. The record is JSON (data); the
-- columns beside it are what lookups filter on. A digest has at most one
-- live (pending or approved) request. Text, not JSONB: the arguments are
-- kept byte for byte as they were canonicalized.
CREATE TABLE approvals (
    id         TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    status     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    data       TEXT NOT NULL
);
CREATE UNIQUE INDEX approvals_live_per_digest ON approvals (digest) WHERE status IN ('pending', 'approved');
CREATE INDEX approvals_by_digest ON approvals (digest, id);
CREATE INDEX approvals_by_agent ON approvals (agent_id, id);
CREATE INDEX approvals_by_status ON approvals (status, id);
