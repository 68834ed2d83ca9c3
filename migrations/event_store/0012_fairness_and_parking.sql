-- Holding under overload and faults (see README, "Overload and faults").
--
-- 1. A fair sale: one user holds at most BOXOFFICE_MAX_HELD_SEATS_PER_USER seats of an
--    event at once. The seats a user holds are those of their bookings whose saga has
--    not passed its payment yet; the saga row carries the user so that the count is one
--    index lookup.
ALTER TABLE booking_sagas ADD COLUMN user_id text;

UPDATE booking_sagas s
   SET user_id = e.payload -> 'BookingRequested' ->> 'user_id'
  FROM events e
 WHERE e.aggregate_type = 'booking' AND e.aggregate_id = s.booking_id AND e.sequence = 1;

CREATE INDEX booking_sagas_holds ON booking_sagas (event_id, user_id)
    WHERE step IN ('reserve', 'authorize', 'confirm');

-- 2. Parked sagas: a saga whose step failed the same way SAGA_PARK_AFTER times in a row
--    is set aside, shown and retried by an operator, rather than spinning for ever.
ALTER TABLE booking_sagas
    ADD COLUMN same_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN parked_at timestamptz;

ALTER TABLE event_cancellation_sagas
    ADD COLUMN same_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN parked_at timestamptz;

CREATE INDEX booking_sagas_parked ON booking_sagas (parked_at) WHERE parked_at IS NOT NULL;
