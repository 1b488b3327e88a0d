-- Causeway store schema, version 1.
-- Applied inside one transaction together with `PRAGMA user_version = 1`.
-- Times are unix milliseconds; states are lowercase names (see the Rust enums).

-- Key/value facts about this database (the key check value).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- Every inbound message, duplicates included.
-- AUTOINCREMENT: ids are never reused, since they are bound into payload encryption and
-- referenced by events that outlive purged messages.
CREATE TABLE messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    channel           TEXT    NOT NULL,
    received_at       INTEGER NOT NULL,
    peer              TEXT    NOT NULL,
    sending_app       TEXT    NOT NULL,   -- MSH-3
    sending_facility  TEXT    NOT NULL,   -- MSH-4
    message_type      TEXT    NOT NULL,   -- MSH-9, e.g. ADT^A01
    control_id        TEXT    NOT NULL,   -- MSH-10
    version           TEXT    NOT NULL,   -- MSH-12
    state             TEXT    NOT NULL CHECK (state IN
                          ('received', 'accepted', 'rejected', 'duplicate', 'filtered', 'error')),
    payload           BLOB,               -- sealed raw bytes; NULL once purged, or for a duplicate
    outbound          BLOB,               -- sealed transformed bytes sent to destinations; NULL when
                                          -- the channel has no transforms (the raw bytes are sent)
    payload_sha256    BLOB    NOT NULL,
    size              INTEGER NOT NULL,
    flags             INTEGER NOT NULL DEFAULT 0,   -- bit 0: control id reused with other bytes
    duplicate_of      INTEGER,            -- the original, for state 'duplicate'
    payload_purged_at INTEGER
);

-- Duplicate detection (whole key) and search by control id (prefix).
CREATE INDEX messages_control_id
    ON messages (control_id, channel, sending_app, sending_facility, payload_sha256);
CREATE INDEX messages_channel_time ON messages (channel, received_at);
CREATE INDEX messages_time ON messages (received_at);
-- Single-column indexes keep rowid order inside each key, so `ORDER BY id DESC` needs no sort.
CREATE INDEX messages_type ON messages (message_type);
CREATE INDEX messages_state ON messages (state);
-- Retention of payloads scans only rows that still have one.
CREATE INDEX messages_live_payload ON messages (channel, received_at) WHERE payload IS NOT NULL;

-- Patient identifiers, stored as HMAC-SHA256 under a key derived from the store key.
CREATE TABLE message_patient_ids (
    identifier_mac BLOB    NOT NULL,
    message_id     INTEGER NOT NULL,
    PRIMARY KEY (identifier_mac, message_id)
) WITHOUT ROWID;
CREATE INDEX message_patient_ids_message ON message_patient_ids (message_id);

-- Per-destination FIFO queues. seq is identity and queue order.
CREATE TABLE deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN
                        ('queued', 'in_flight', 'delivered', 'retrying', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    last_ack        BLOB,                -- sealed
    claimed_by      TEXT,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_queue ON deliveries (destination, state, seq);
-- The pending part of each queue, in order: the FIFO head is its first entry.
CREATE INDEX deliveries_pending ON deliveries (destination, seq)
    WHERE state IN ('queued', 'in_flight', 'retrying');
CREATE INDEX deliveries_message ON deliveries (message_id);

-- The ACK sent for a message (sealed), answered again to a retransmission.
CREATE TABLE acks (
    message_id INTEGER PRIMARY KEY,
    ack        BLOB    NOT NULL,
    at         INTEGER NOT NULL
);

-- Transitions and operational events. detail never holds PHI.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    channel     TEXT    NOT NULL,
    destination TEXT,
    message_id  INTEGER,
    kind        TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);
CREATE INDEX events_channel_at ON events (channel, at);
CREATE INDEX events_message ON events (message_id);
