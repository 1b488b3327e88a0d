-- Causeway store schema, version 6: quantity search values (`Observation?value-quantity=gt7`)
-- and code-with-quantity composites (`Observation?component-code-value-quantity=8480-6$gt140`).
--
-- A quantity's number goes in `num` (REAL), its unit's system and code in `system` and `value`
-- like a token's. A composite keeps its code in `system` and `value`, its number in `num` and
-- its unit's code in `unit`. Quantities have their own partial index to serve a search driven by
-- a range; the per-candidate index takes `num` and `unit` too, so checking a clause still reads
-- that index alone. Resources stored before this version have none of these rows until the
-- engine extracts their values again at its next start (see `search_index.rs` in the engine).

ALTER TABLE resource_index ADD COLUMN num REAL;
ALTER TABLE resource_index ADD COLUMN unit TEXT;
CREATE INDEX resource_index_num ON resource_index (param, num, key) WHERE num IS NOT NULL;

DROP INDEX resource_index_key;
CREATE INDEX resource_index_key ON resource_index (key, param, value, system, lo, hi, num, unit);
