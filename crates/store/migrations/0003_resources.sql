-- Causeway store schema, version 3: the FHIR resource store behind the API.
-- Current state per resource in `resources`, every version (sealed JSON) in `resource_versions`,
-- search values of the current version in `resource_index`.

CREATE TABLE resources (
    key            INTEGER PRIMARY KEY AUTOINCREMENT,  -- bound into each version's encryption
    type           TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    last_updated   INTEGER NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    content_sha256 BLOB    NOT NULL,   -- of the current JSON: an identical write makes no version
    UNIQUE (type, id)
);
CREATE INDEX resources_type_updated ON resources (type, last_updated);
CREATE INDEX resources_updated ON resources (last_updated);

CREATE TABLE resource_versions (
    key            INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    last_updated   INTEGER NOT NULL,
    deleted        INTEGER NOT NULL,
    payload        BLOB,               -- sealed JSON; NULL for a deletion
    source_message INTEGER,            -- the inbound message it came from, when it did
    PRIMARY KEY (key, version)
);
CREATE INDEX resource_versions_time ON resource_versions (last_updated);

-- One row per search value of a current, live resource. `param` is type-qualified
-- (`Observation.code`); tokens use system + value, strings and references value, dates lo..hi
-- (inclusive unix milliseconds).
CREATE TABLE resource_index (
    key    INTEGER NOT NULL,
    param  TEXT    NOT NULL,
    system TEXT    NOT NULL DEFAULT '',
    value  TEXT,
    lo     INTEGER,
    hi     INTEGER
);
CREATE INDEX resource_index_value ON resource_index (param, value, system, key);
CREATE INDEX resource_index_date ON resource_index (param, lo, hi, key) WHERE lo IS NOT NULL;
-- Per candidate: does it have a value of this parameter (the non-driving clauses)? Covering,
-- so the check reads the index page alone.
CREATE INDEX resource_index_key ON resource_index (key, param, value, system, lo, hi);

-- A FHIR API write waiting for the EHR's ACK: applied to `resources` in the same transaction
-- as its delivery settles `delivered`, marked `rejected` when it fails. One per message.
CREATE TABLE pending_resources (
    message_id  INTEGER PRIMARY KEY,
    type        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    payload     BLOB    NOT NULL,   -- sealed: the JSON, then its search values (see resources.rs)
    if_match    INTEGER,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'applied', 'rejected')),
    version     INTEGER,            -- the version written once applied
    updated_at  INTEGER NOT NULL
);

-- Named positions of background scanners (the subscription matcher's place in
-- resource_versions, by rowid), moved in the same transaction as the work they cover.
CREATE TABLE cursors (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;

-- Subscription notifications to send: one per (subscription, resource version), leased like
-- deliveries so several processes can share the work and a crash only delays a send.
CREATE TABLE notifications (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription    TEXT    NOT NULL,
    resource_type   TEXT    NOT NULL,
    resource_id     TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN
                        ('queued', 'in_flight', 'delivered', 'retrying', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    claimed_by      TEXT,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (subscription, resource_type, resource_id, version)
);
CREATE INDEX notifications_pending ON notifications (state, seq)
    WHERE state IN ('queued', 'in_flight', 'retrying');
