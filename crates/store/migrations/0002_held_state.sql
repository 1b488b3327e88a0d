-- Causeway store schema, version 2: a message may be 'held' (accepted and acknowledged, but not
-- routed until reviewed: a code map's `hold` policy met a code it does not know).
--
-- SQLite cannot change a CHECK constraint in place, so `messages` is rebuilt with the same columns,
-- rows and indexes. Message ids are never reused (they are bound into payload encryption), so the
-- AUTOINCREMENT counter is carried over even when the highest ids were purged.

CREATE TEMP TABLE message_id_counter AS
    SELECT seq FROM sqlite_sequence WHERE name = 'messages';

CREATE TABLE messages_v2 (
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
                          ('received', 'accepted', 'rejected', 'duplicate', 'filtered', 'error',
                           'held')),
    payload           BLOB,               -- sealed raw bytes; NULL once purged, or for a duplicate
    outbound          BLOB,               -- sealed transformed bytes sent to destinations; NULL when
                                          -- the channel has no transforms (the raw bytes are sent)
    payload_sha256    BLOB    NOT NULL,
    size              INTEGER NOT NULL,
    flags             INTEGER NOT NULL DEFAULT 0,   -- bit 0: control id reused with other bytes
    duplicate_of      INTEGER,            -- the original, for state 'duplicate'
    payload_purged_at INTEGER
);

INSERT INTO messages_v2 (id, channel, received_at, peer, sending_app, sending_facility, message_type,
                         control_id, version, state, payload, outbound, payload_sha256, size, flags,
                         duplicate_of, payload_purged_at)
    SELECT id, channel, received_at, peer, sending_app, sending_facility, message_type,
           control_id, version, state, payload, outbound, payload_sha256, size, flags,
           duplicate_of, payload_purged_at
    FROM messages;

DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;

DELETE FROM sqlite_sequence WHERE name IN ('messages', 'messages_v2');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'messages', max(coalesce((SELECT max(seq) FROM message_id_counter), 0),
                           coalesce((SELECT max(id) FROM messages), 0));
DROP TABLE message_id_counter;

CREATE INDEX messages_control_id
    ON messages (control_id, channel, sending_app, sending_facility, payload_sha256);
CREATE INDEX messages_channel_time ON messages (channel, received_at);
CREATE INDEX messages_time ON messages (received_at);
CREATE INDEX messages_type ON messages (message_type);
CREATE INDEX messages_state ON messages (state);
CREATE INDEX messages_live_payload ON messages (channel, received_at) WHERE payload IS NOT NULL;
