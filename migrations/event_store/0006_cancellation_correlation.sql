-- The steps a cancellation starts (the refund of a cancelled booking, the release of a
-- booking rejected with its event) now carry the correlation id of the request that
-- cancelled, not the one of the original booking request: an auditor following the
-- cancellation request sees the refund it caused. Same function as 0003 otherwise.

CREATE OR REPLACE FUNCTION boxoffice_drive_sagas() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    fact jsonb;
BEGIN
    IF NEW.aggregate_type = 'booking' THEN
        IF NEW.event_type = 'BookingRequested' THEN
            fact := NEW.payload -> 'BookingRequested';
            INSERT INTO booking_sagas (booking_id, event_id, seats, amount_cents, currency, card_token,
                                       correlation_id, step)
            VALUES (NEW.aggregate_id, fact ->> 'event_id', (fact ->> 'seats')::integer,
                    (fact ->> 'amount_cents')::bigint, fact ->> 'currency', fact ->> 'card_token',
                    coalesce(NEW.metadata ->> 'correlation_id', NEW.aggregate_id), 'reserve')
            ON CONFLICT (booking_id) DO NOTHING;
        ELSIF NEW.event_type = 'BookingCancelled' THEN
            -- A confirmed booking was cancelled (by its owner, or with its event): refund.
            UPDATE booking_sagas
               SET step = 'refund', reason = NULL, outcome = NULL, attempts = 0, due_at = now(),
                   lease_until = NULL, version = version + 1, updated_at = now(),
                   correlation_id = coalesce(NEW.metadata ->> 'correlation_id', correlation_id)
             WHERE booking_id = NEW.aggregate_id;
        ELSIF NEW.event_type = 'BookingRejected'
            AND NEW.payload -> 'BookingRejected' ->> 'reason' = 'event_cancelled' THEN
            -- A pending booking was rejected with its event: give back whatever it holds.
            UPDATE booking_sagas
               SET step = 'release', reason = 'event_cancelled', attempts = 0, due_at = now(),
                   lease_until = NULL, version = version + 1, updated_at = now(),
                   correlation_id = coalesce(NEW.metadata ->> 'correlation_id', correlation_id)
             WHERE booking_id = NEW.aggregate_id AND step NOT IN ('release', 'done');
        END IF;
    ELSIF NEW.aggregate_type = 'event' AND NEW.event_type = 'EventCancelled' THEN
        INSERT INTO event_cancellation_sagas (event_id, correlation_id)
        VALUES (NEW.aggregate_id, coalesce(NEW.metadata ->> 'correlation_id', NEW.aggregate_id))
        ON CONFLICT (event_id) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
