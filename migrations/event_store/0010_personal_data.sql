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
--    show). So they are redacted in the open: each BookingRequested that holds one loses
--    the field, its stored hash is kept as it was (so the chain still links), and a row
--    of `redactions` records what was done, when, why, and the digest of the payload as
--    it now is. Verification accepts a redacted event when its payload matches that
--    digest, and reports it as redacted; any other change to it is still tampering. An
--    export taken before this migration holds the old payloads with the same hashes, so
--    it can be checked against this record.
CREATE TABLE redactions
(
    position        bigint PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    reason          text        NOT NULL,
    redacted_at     timestamptz NOT NULL DEFAULT now(),
    -- sha256 of payload::text as it is after the redaction
    redacted_digest bytea       NOT NULL
);

ALTER TABLE events DISABLE TRIGGER events_append_only;

WITH redacted AS (
    UPDATE events
       SET payload = jsonb_set(payload, '{BookingRequested}', (payload -> 'BookingRequested') - 'card_token')
     WHERE event_type = 'BookingRequested'
       AND payload -> 'BookingRequested' ? 'card_token'
    RETURNING position, aggregate_type, aggregate_id, sequence, payload)
INSERT INTO redactions (position, aggregate_type, aggregate_id, sequence, reason, redacted_digest)
SELECT position, aggregate_type, aggregate_id, sequence, 'card_token', sha256(convert_to(payload::text, 'UTF8'))
  FROM redacted;

ALTER TABLE events ENABLE TRIGGER events_append_only;

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
