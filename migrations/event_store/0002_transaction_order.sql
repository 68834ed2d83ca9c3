-- Readers that must never skip an event (the projector's sweep, rebuilds, exports) walk
-- the store in (transaction_id, position) order and stop before the oldest transaction
-- still running: every event of a transaction older than that is final, and no event
-- can appear behind the cursor later. Positions alone cannot give that, because they
-- are taken at insert time and commit in any order.
CREATE INDEX events_transaction_position ON events (transaction_id, position);
