-- Policy: stored bundle versions and their files, the record of activations,
-- the one row saying which versions are live (locked by every transaction
-- that changes them), and the registered enforcement points.

-- Versions are immutable. seq is the order of storing: it breaks ties of
-- created_at, so that listings page deterministically.
CREATE TABLE policy_versions (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,  -- the content digest, sha256:<hex>
    parent     TEXT NOT NULL,         -- '' when none
    author     TEXT NOT NULL,
    message    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    tests      BYTEA                  -- a JSON object, kept as written
);
CREATE INDEX policy_versions_by_created ON policy_versions (created_at, seq);

CREATE TABLE policy_files (
    version TEXT NOT NULL REFERENCES policy_versions (id),
    path    TEXT NOT NULL,
    content BYTEA NOT NULL,
    PRIMARY KEY (version, path)
);

-- Every change of the active version, activation or rollback. undo is the
-- activation a rollback from this one returns to.
CREATE TABLE policy_activations (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version TEXT NOT NULL REFERENCES policy_versions (id),
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    time    TIMESTAMPTZ NOT NULL,
    undo    BIGINT REFERENCES policy_activations (seq)
);

-- The live versions: the current activation (whose version is active) and
-- the shadow; NULL for none.
CREATE TABLE policy_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    activation BIGINT REFERENCES policy_activations (seq),
    shadow     TEXT REFERENCES policy_versions (id)
);
INSERT INTO policy_state (id) VALUES (1);

-- A revoked point keeps its row (and its digest) until a point of the same
-- name replaces it. Names are listed in byte order, as in SQLite.
CREATE TABLE enforcement_points (
    name              TEXT COLLATE "C" PRIMARY KEY,
    credential_digest BYTEA NOT NULL UNIQUE,  -- SHA-256 of the credential
    description       TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    created_by        TEXT NOT NULL,
    revoked_at        TIMESTAMPTZ
);
