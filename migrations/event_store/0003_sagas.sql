-- Sagas: one row per booking (and per cancelled event), with the step it is at and its
-- deadline, so a saga survives any crash. Rows are started and moved by a trigger on
-- `events`, in the transaction that appends the fact that calls for it: a booking's saga
-- exists if and only if the booking was requested.
--
-- Workers claim due rows with a lease (`lease_until`); a row's `version` changes whenever
-- a fact moves the saga from outside (a cancellation), so a worker that was still busy
-- with the old step cannot overwrite the new one.

CREATE TABLE booking_sagas
(
    booking_id     text PRIMARY KEY,
    event_id       text        NOT NULL,
    seats          integer     NOT NULL,
    amount_cents   bigint      NOT NULL,
    currency       text        NOT NULL,
    card_token     text        NOT NULL,
    correlation_id text        NOT NULL,
    step           text        NOT NULL, -- reserve | authorize | confirm | release | refund | done
    reason         text,                 -- release: why the booking is rejected
    outcome        text,                 -- done: confirmed | rejected | cancelled
    hold_deadline  timestamptz,          -- authorize: when the hold expires
    attempts       integer     NOT NULL DEFAULT 0,
    due_at         timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    version        bigint      NOT NULL DEFAULT 1,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX booking_sagas_due ON booking_sagas (due_at) WHERE step <> 'done';
CREATE INDEX booking_sagas_event ON booking_sagas (event_id);

CREATE TABLE event_cancellation_sagas
(
    event_id       text PRIMARY KEY,
    correlation_id text        NOT NULL,
    done           boolean     NOT NULL DEFAULT false,
    attempts       integer     NOT NULL DEFAULT 0,
    due_at         timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX event_cancellation_sagas_due ON event_cancellation_sagas (due_at) WHERE NOT done;

-- The simulated payment gateway's books (a real gateway keeps its own): one row per
-- booking, the idempotency key, so a payment is never taken twice.
CREATE TABLE simulated_payments
(
    key           text PRIMARY KEY,
    card_token    text        NOT NULL,
    amount_cents  bigint      NOT NULL,
    currency      text        NOT NULL,
    status        text        NOT NULL, -- authorized | voided | refunded
    authorized_at timestamptz NOT NULL DEFAULT now(),
    settled_at    timestamptz
);

CREATE FUNCTION boxoffice_drive_sagas() RETURNS trigger
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
                   lease_until = NULL, version = version + 1, updated_at = now()
             WHERE booking_id = NEW.aggregate_id;
        ELSIF NEW.event_type = 'BookingRejected'
            AND NEW.payload -> 'BookingRejected' ->> 'reason' = 'event_cancelled' THEN
            -- A pending booking was rejected with its event: give back whatever it holds.
            UPDATE booking_sagas
               SET step = 'release', reason = 'event_cancelled', attempts = 0, due_at = now(),
                   lease_until = NULL, version = version + 1, updated_at = now()
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

CREATE TRIGGER events_drive_sagas
    AFTER INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION boxoffice_drive_sagas();
