-- Incidents: one per agent per episode of risk, opened by the automatic
-- response. The record itself is JSON (data); the columns beside it are
-- what lists filter on. An agent has at most one incident not resolved.
CREATE TABLE incidents (
    id         TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    status     TEXT NOT NULL,
    opened_at  TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    data       JSONB NOT NULL
);
CREATE UNIQUE INDEX incidents_open_per_agent ON incidents (agent_id) WHERE status <> 'resolved';
CREATE INDEX incidents_by_agent ON incidents (agent_id, id);
