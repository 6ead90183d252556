-- Identity: agents, issuer signing keys, token revocations, single-use values,
-- the record of administrative actions, and deployment metadata.
-- Times are timestamptz.

CREATE TABLE agents (
    id                TEXT COLLATE "C" PRIMARY KEY,
    trust_domain      TEXT NOT NULL,
    roles             JSONB NOT NULL, -- JSON array of strings
    owner             TEXT NOT NULL,
    attributes        JSONB NOT NULL, -- JSON object of strings
    status            TEXT NOT NULL,
    keys              JSON NOT NULL,  -- JSON array of registered public keys, kept as written
    tokens_revoked_at TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX agents_by_trust_domain ON agents (trust_domain, id);

-- Every registered key, current or retired, belongs to exactly one agent.
CREATE TABLE agent_keys (
    kid      TEXT COLLATE "C" PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (id)
);
CREATE INDEX agent_keys_by_agent ON agent_keys (agent_id);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    alg        TEXT NOT NULL,
    public_jwk BYTEA NOT NULL,
    sealed     BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    active     BOOLEAN NOT NULL,
    retire_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (active) WHERE active;

CREATE TABLE revoked_tokens (
    jti        TEXT COLLATE "C" PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);

CREATE TABLE used_values (
    scope      TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, value)
);
CREATE INDEX used_values_by_expiry ON used_values (expires_at);

CREATE TABLE events (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time   TIMESTAMPTZ NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail JSONB
);
CREATE INDEX events_by_target ON events (target, seq);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
