-- Taints: content an agent must not trust entered its context. One row per
-- agent, scope (task, '' for the agent as a whole) and taint name.
CREATE TABLE taints (
    agent_id          TEXT NOT NULL,
    task              TEXT NOT NULL,
    name              TEXT NOT NULL,
    decision_id       TEXT NOT NULL,
    audit_index       BIGINT NOT NULL,
    enforcement_point TEXT NOT NULL,
    action            TEXT NOT NULL,
    resource_kind     TEXT NOT NULL,
    resource_id       TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    last_read_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_id, task, name)
);
CREATE INDEX taints_by_last_read ON taints (last_read_at);
