-- The saga rules and the Idempotency-Key records move out of the database, into Rust:
-- `domain::policy` decides them and command-api writes them in the statement that
-- appends the facts (see `command-api/src/append.rs`). The triggers on `events` keep
-- only what guards the store itself: the hash chain (events_chain), the append-only
-- guard (events_append_only) and the outbox row (events_appended).

DROP TRIGGER events_drive_sagas ON events;
DROP FUNCTION boxoffice_drive_sagas();

CREATE OR REPLACE FUNCTION boxoffice_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO outbox (position, aggregate_type, aggregate_id, sequence, hash)
    VALUES (NEW.position, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.hash);
    RETURN NULL;
END
$$;

-- Fencing. A runner claims a saga with a token of its own; a fact that moves the saga
-- from outside bumps its version but leaves the lease alone, so the holder finishes
-- (or abandons) its step, finds its save refused, and lets go of the lease by its
-- token. Nobody else takes the saga up while the lease is held.
ALTER TABLE booking_sagas
    ADD COLUMN lease_token uuid,
    -- The payment gateway's id of the booking's payment intent, once authorized.
    ADD COLUMN payment_intent text;

-- The payment simulator that lived in command-api kept its books here. The payment
-- gateway is now a service of its own with its own storage (payment-gateway/); it
-- knows nothing of these simulated payments. Bookings confirmed before were captured
-- by 0008; a saga still running asks the gateway again under the same key (the
-- booking), and a refund of a payment the gateway never saw has nothing to give back.
DROP TABLE simulated_payments;
