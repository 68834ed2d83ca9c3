-- The statement that appends events: see APPEND_SQL in append.rs.
WITH appended AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT a, i, s, t, v, p, m
      FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
           AS u(a, i, s, t, v, p, m)
    RETURNING 1
), started AS (
    INSERT INTO booking_sagas (booking_id, event_id, user_id, seats, amount_cents, currency, payment_method, correlation_id, traceparent, step)
    SELECT x.booking_id, x.event_id, x.user_id, x.seats, x.amount_cents, x.currency, x.payment_method, x.correlation_id, x.traceparent, 'reserve'
      FROM jsonb_to_recordset($8::jsonb)
           AS x(booking_id text, event_id text, user_id text, seats integer, amount_cents bigint, currency text,
                payment_method text, correlation_id text, traceparent text)
    ON CONFLICT (booking_id) DO NOTHING
), moved AS (
    -- The lease stays as it is: a runner still busy with the old step finishes it, finds
    -- its save refused (the version moved) and lets go; then the new step is taken up.
    UPDATE booking_sagas s
       SET step = x.step, reason = x.reason, outcome = NULL, attempts = 0, due_at = now(),
           last_error = NULL, same_failures = 0, parked_at = NULL,
           version = s.version + 1, updated_at = now(),
           correlation_id = x.correlation_id, traceparent = x.traceparent
      FROM jsonb_to_recordset($9::jsonb)
           AS x(booking_id text, step text, reason text, unless_at text[], correlation_id text, traceparent text)
     WHERE s.booking_id = x.booking_id AND s.step <> ALL (x.unless_at)
), cancellations AS (
    INSERT INTO event_cancellation_sagas (event_id, correlation_id, traceparent)
    SELECT x.event_id, x.correlation_id, x.traceparent
      FROM jsonb_to_recordset($10::jsonb) AS x(event_id text, correlation_id text, traceparent text)
    ON CONFLICT (event_id) DO NOTHING
), keys AS (
    -- A key held by another command makes the whole statement fail (unique violation
    -- on idempotency_keys_pkey): the command answers with that command's result.
    INSERT INTO idempotency_keys (user_id, idempotency_key, request_fingerprint, request_id,
                                  aggregate_type, aggregate_id, last_sequence)
    SELECT x.user_id, x.idempotency_key, x.request_fingerprint, x.request_id,
           x.aggregate_type, x.aggregate_id, x.last_sequence
      FROM jsonb_to_recordset($11::jsonb)
           AS x(user_id text, idempotency_key text, request_fingerprint text, request_id text,
                aggregate_type text, aggregate_id text, last_sequence bigint)
), destroyed AS (
    -- An erasure: the keys go with the fact that records it, or neither does. Every key
    -- of the user alive now goes, also one a booking made in the meantime.
    UPDATE user_keys k
       SET secret = NULL, destroyed_at = now()
      FROM jsonb_to_recordset($12::jsonb) AS x(user_id text)
     WHERE k.user_id = x.user_id AND k.secret IS NOT NULL
)
SELECT count(*) FROM appended
