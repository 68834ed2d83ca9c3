-- Bookings requested before sagas existed (before 0003) are still pending: give each a
-- saga at its first step, as the trigger does for new ones.
INSERT INTO booking_sagas (booking_id, event_id, seats, amount_cents, currency, card_token, correlation_id, step)
SELECT e.aggregate_id,
       e.payload -> 'BookingRequested' ->> 'event_id',
       (e.payload -> 'BookingRequested' ->> 'seats')::integer,
       (e.payload -> 'BookingRequested' ->> 'amount_cents')::bigint,
       e.payload -> 'BookingRequested' ->> 'currency',
       e.payload -> 'BookingRequested' ->> 'card_token',
       coalesce(e.metadata ->> 'correlation_id', e.aggregate_id),
       'reserve'
  FROM events e
 WHERE e.aggregate_type = 'booking'
   AND e.event_type = 'BookingRequested'
   AND NOT EXISTS (SELECT 1 FROM events later
                    WHERE later.aggregate_type = 'booking' AND later.aggregate_id = e.aggregate_id
                      AND later.sequence > 1)
ON CONFLICT (booking_id) DO NOTHING;
