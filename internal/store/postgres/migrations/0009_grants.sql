-- Just-in-time task grants. The record is JSON (data); the columns beside
-- it are what lookups filter on.
CREATE TABLE grants (
    id       TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    task     TEXT NOT NULL,
    status   TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX grants_by_agent ON grants (agent_id, id);
CREATE INDEX grants_by_task ON grants (task, id);
CREATE INDEX grants_by_status ON grants (status, id);
