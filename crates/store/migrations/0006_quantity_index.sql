-- Causeway store schema, version 6: quantity search values (`Observation?value-quantity=gt7`).
--
-- A quantity's number goes in `num` (REAL), its unit's system and code in `system` and `value`
-- like a token's. Its own partial index serves a search driven by a quantity range; the
-- per-candidate index takes `num` too, so checking a quantity clause still reads that index
-- alone. Resources stored before this version have no quantity rows until the engine reindexes
-- them at its next start (see `search_index.rs` in the engine crate).

ALTER TABLE resource_index ADD COLUMN num REAL;
CREATE INDEX resource_index_num ON resource_index (param, num, key) WHERE num IS NOT NULL;

DROP INDEX resource_index_key;
CREATE INDEX resource_index_key ON resource_index (key, param, value, system, lo, hi, num);
