-- The audit log: entries sequenced by the database (the head row is locked
-- by each appending transaction), the Merkle tree's nodes as the leader
-- integrates them, signed checkpoints, and exporters' cursors.

CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    size      BIGINT NOT NULL,
    last_leaf BYTEA
);
INSERT INTO audit_head (id, size) VALUES (1, 0);

CREATE TABLE audit_entries (
    idx     BIGINT PRIMARY KEY,
    time    TIMESTAMPTZ NOT NULL,
    kind    TEXT NOT NULL,
    agent   TEXT COLLATE "C",
    outcome TEXT,
    data    BYTEA NOT NULL,
    leaf    BYTEA NOT NULL
);
CREATE INDEX audit_entries_by_agent ON audit_entries (agent, idx);
CREATE INDEX audit_entries_by_kind ON audit_entries (kind, idx);
CREATE INDEX audit_entries_by_time ON audit_entries (time, idx);

CREATE TABLE audit_tree (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO audit_tree (id, size) VALUES (1, 0);

CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoints (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size   BIGINT NOT NULL,
    time   TIMESTAMPTZ NOT NULL,
    signed BYTEA NOT NULL
);
-- Checkpoints are read by size: after a change of leader, one signed by the
-- old leader for a smaller tree may be stored after a larger one.
CREATE INDEX audit_checkpoints_size ON audit_checkpoints (size, seq);

CREATE TABLE audit_cursors (
    name TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);
