-- Identity: agents, issuer signing keys, token revocations, the record of
-- administrative actions, and deployment metadata. (Single-use values live in
-- the replay log beside the database.)
-- Times are unix microseconds, UTC.

CREATE TABLE agents (
    id                TEXT PRIMARY KEY,
    trust_domain      TEXT NOT NULL,
    roles             TEXT NOT NULL,  -- JSON array of strings
    owner             TEXT NOT NULL,
    attributes        TEXT NOT NULL,  -- JSON object of strings
    status            TEXT NOT NULL,
    keys              TEXT NOT NULL,  -- JSON array of registered public keys
    tokens_revoked_at INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX agents_by_trust_domain ON agents (trust_domain, id);

-- Every registered key, current or retired, belongs to exactly one agent.
CREATE TABLE agent_keys (
    kid      TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (id)
);
CREATE INDEX agent_keys_by_agent ON agent_keys (agent_id);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    alg        TEXT NOT NULL,
    public_jwk BLOB NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    active     INTEGER NOT NULL,
    retire_at  INTEGER
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (active) WHERE active = 1;

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);

CREATE TABLE events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    time   INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX events_by_target ON events (target, seq);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
