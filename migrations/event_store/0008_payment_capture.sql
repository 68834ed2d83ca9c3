-- The simulated gateway captures: an authorization is only a hold on the card until the
-- saga captures it, after the booking is confirmed. Statuses are now
-- authorized -> captured -> refunded, or authorized -> voided.
ALTER TABLE simulated_payments
    ADD COLUMN captured_at timestamptz;

COMMENT ON COLUMN simulated_payments.status IS 'authorized | captured | voided | refunded';

-- Bookings confirmed before this migration were never captured; their saga is done, so
-- capture them here, as the saga would have.
UPDATE simulated_payments p
   SET status = 'captured', captured_at = now()
  FROM booking_sagas s
 WHERE s.booking_id = p.key AND s.outcome = 'confirmed' AND p.status = 'authorized';
