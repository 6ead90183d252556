-- People who signed in through the OpenID provider, and their Warden
-- sessions (only each session token's SHA-256 digest is kept).
CREATE TABLE humans (
    id   TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE human_sessions (
    digest     TEXT PRIMARY KEY,
    human_id   TEXT NOT NULL REFERENCES humans (id),
    expires_at INTEGER NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX human_sessions_by_human ON human_sessions (human_id);
