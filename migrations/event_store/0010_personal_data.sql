-- Personal and card data out of the immutable log.
--
-- 1. Contact data (the token's email and name) is stored sealed under a key of its user;
--    the keys live here, in a table that is not append-only. Erasing a user destroys
--    their keys (the secret goes, the row stays as a record of when), which makes every
--    copy of what was sealed under them unreadable. One live key per user at a time.
CREATE TABLE user_keys
(
    key_id       uuid PRIMARY KEY,
    user_id      text        NOT NULL,
    secret       bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK ((secret IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK (secret IS NULL OR length(secret) = 32)
);

CREATE UNIQUE INDEX user_keys_live ON user_keys (user_id) WHERE secret IS NOT NULL;

-- 2. Card tokens go to the payment gateway only: a booking carries the gateway's
--    payment method instead. Sagas past their capture no longer need the token of a
--    booking made before this change; those still before it keep it until they pass it
--    (the runner drops it then).
ALTER TABLE booking_sagas
    ADD COLUMN payment_method text,
    ALTER COLUMN card_token DROP NOT NULL;

UPDATE booking_sagas
   SET card_token = NULL
 WHERE step NOT IN ('reserve', 'authorize', 'confirm');

-- 3. The card tokens already in the store. They cannot stay (nothing could ever erase
--    them) and they cannot be removed silently (that is what the hash chain exists to
--    show). So they are redacted in the open:
--    - each BookingRequested of before 3.0 loses its `card_token` field, and the
--      request fingerprint of its metadata (a hash of the request body, card included);
--    - its stored hash stays as it was, so the next event of its stream still links to
--      it and the append receipts still name it;
--    - `redactions` records, per event, the hash its content would have now (the same
--      function, the same predecessor, the redacted payload and metadata);
--    - and one fact, `EventsRedacted` on the stream store/redactions, appended here
--      through the chain and the outbox like any other, names every redacted event and
--      that hash. Verification accepts a redacted event only when its content hashes to
--      what that fact recorded for it; any other change to it is still tampering.
CREATE TABLE redactions
(
    position       bigint PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    reason         text        NOT NULL,
    redacted_at    timestamptz NOT NULL DEFAULT now(),
    -- boxoffice_event_hash of the event as it is after the redaction
    redacted_hash  bytea       NOT NULL
);

ALTER TABLE events DISABLE TRIGGER events_append_only;

WITH redacted AS (
    UPDATE events
       SET payload  = jsonb_set(payload, '{BookingRequested}', (payload -> 'BookingRequested') - 'card_token'),
           metadata = metadata - 'request_fingerprint'
     WHERE event_type = 'BookingRequested'
       AND event_version IN ('1.0', '2.0')
       AND payload -> 'BookingRequested' ? 'card_token'
    RETURNING aggregate_type, aggregate_id, sequence, position, event_type, event_version, payload, metadata)
INSERT INTO redactions (position, aggregate_type, aggregate_id, sequence, reason, redacted_hash)
SELECT r.position, r.aggregate_type, r.aggregate_id, r.sequence, 'card_token',
       boxoffice_event_hash(previous.hash, r.aggregate_type, r.aggregate_id, r.sequence, r.position,
                            r.event_type, r.event_version, r.payload, r.metadata)
  FROM redacted r
  LEFT JOIN events previous
         ON previous.aggregate_type = r.aggregate_type AND previous.aggregate_id = r.aggregate_id
        AND previous.sequence = r.sequence - 1;

ALTER TABLE events ENABLE TRIGGER events_append_only;

INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'store', 'redactions',
       1 + coalesce((SELECT max(sequence) FROM events WHERE aggregate_type = 'store' AND aggregate_id = 'redactions'), 0),
       'EventsRedacted', '1.0',
       jsonb_build_object('EventsRedacted', jsonb_build_object(
               'reason', 'card_token',
               'migration', '0010_personal_data',
               'events', jsonb_agg(jsonb_build_object('position', position, 'hash', encode(redacted_hash, 'hex'))
                                   ORDER BY position))),
       jsonb_build_object('user_id', 'system:migration', 'correlation_id', 'migration-0010',
                          'causation_id', 'migration-0010',
                          'recorded_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
  FROM redactions
HAVING count(*) > 0;

-- The fingerprints of the requests whose keys are still remembered hash their bodies,
-- cards included; from now on a fingerprint is keyed (HMAC). A retry of a request made
-- before this migration is answered 422 idempotency_key_reused (keys live 24 hours).
UPDATE idempotency_keys
   SET request_fingerprint = 'redacted';

-- 4. Who this store is, for the payment gateway's books: the intents boxoffice creates
--    carry it, and the reconciliation sweep only ever touches intents that do (a gateway
--    account may serve other stores too).
CREATE TABLE store_identity
(
    id         uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    singleton  boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton)
);

INSERT INTO store_identity (id) VALUES (gen_random_uuid());
