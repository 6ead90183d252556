-- Policy: stored bundle versions and their files, the record of activations,
-- the one row saying which versions are live, and the registered
-- enforcement points. Times are unix microseconds, UTC.

-- Versions are immutable. seq is the order of storing: it breaks ties of
-- created_at, so that listings page deterministically.
CREATE TABLE policy_versions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,  -- the content digest, sha256:<hex>
    parent     TEXT NOT NULL,         -- '' when none
    author     TEXT NOT NULL,
    message    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    tests      BLOB                   -- a JSON object, kept as written
);
CREATE INDEX policy_versions_by_created ON policy_versions (created_at, seq);

CREATE TABLE policy_files (
    version TEXT NOT NULL REFERENCES policy_versions (id),
    path    TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (version, path)
);

-- Every change of the active version, activation or rollback. undo is the
-- activation a rollback from this one returns to.
CREATE TABLE policy_activations (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL REFERENCES policy_versions (id),
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    time    INTEGER NOT NULL,
    undo    INTEGER REFERENCES policy_activations (seq)
);

-- The live versions: the current activation (whose version is active) and
-- the shadow; NULL for none.
CREATE TABLE policy_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    activation INTEGER REFERENCES policy_activations (seq),
    shadow     TEXT REFERENCES policy_versions (id)
);
INSERT INTO policy_state (id) VALUES (1);

-- A revoked point keeps its row (and its digest) until a point of the same
-- name replaces it.
CREATE TABLE enforcement_points (
    name              TEXT PRIMARY KEY,
    credential_digest BLOB NOT NULL UNIQUE,  -- SHA-256 of the credential
    description       TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT NOT NULL,
    revoked_at        INTEGER
);
