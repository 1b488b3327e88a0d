-- Causeway store schema, version 5: less work per inbound commit.
--
-- Each secondary index costs at least one 4 KiB page in every group commit that touches it (its
-- last leaf, rewritten into the WAL and fsynced), whatever the number of messages in the group.
-- `messages_state` indexed every message, almost all of them 'accepted', although a search by
-- state is only selective for the others; `deliveries_queue` moved every delivery twice (queued
-- to in_flight to delivered) although only the error queue (state 'failed') read it.
-- Searches for 'accepted' walk the table newest first, which finds them at once.
--
-- SQLite evaluates `x IN (a, b, c)` with more than two constants, where no index serves it, by
-- building a temporary B-tree of the constants each time the statement runs: in a partial
-- index's WHERE that is every insert and update of the table. The pending queues' partial
-- indexes now name the two settled states instead (the same rows, given the CHECK); queries
-- use the same term so that SQLite matches them. The CHECK constraints themselves are rewritten
-- by the Rust step of this migration (see `migrations.rs`).

DROP INDEX messages_state;
CREATE INDEX messages_unusual_state ON messages (state) WHERE state <> 'accepted';

DROP INDEX deliveries_queue;
CREATE INDEX deliveries_failed ON deliveries (destination, seq) WHERE state = 'failed';

DROP INDEX deliveries_pending;
CREATE INDEX deliveries_pending ON deliveries (destination, seq)
    WHERE state NOT IN ('delivered', 'failed');

-- Keyed by seq alone: the notification worker takes the oldest pending entries in seq order,
-- which SQLite could not read from (state, seq) without sorting, so it walked the whole table
-- from its first row, settled notifications included.
DROP INDEX notifications_pending;
CREATE INDEX notifications_pending ON notifications (seq)
    WHERE state NOT IN ('delivered', 'failed');
