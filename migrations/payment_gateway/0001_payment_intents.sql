-- The payment gateway's books (schema payment_gateway; the pool's search_path is that
-- schema, so names here are unqualified).
--
-- One row per Idempotency-Key. A row is either an intent (a card was presented: amount,
-- currency, payment_method and the request fingerprint are set) or a tombstone (a
-- technical cancel of a key nobody had used: only the key, status 'voided'), which
-- keeps that key from ever authorizing.

CREATE TABLE payment_intents (
    id                  text PRIMARY KEY,
    -- Creation order, for cursors (ids are random).
    seq                 bigint GENERATED ALWAYS AS IDENTITY,
    idempotency_key     text NOT NULL UNIQUE,
    request_fingerprint text,
    amount              bigint,
    currency            text,
    -- The card token: the gateway is the one place allowed to keep it. Never returned.
    payment_method      text,
    status              text NOT NULL
        CHECK (status IN ('authorized', 'captured', 'voided', 'refunded', 'declined')),
    decline_code        text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_intents_intent_or_tombstone CHECK (
        (request_fingerprint IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
            AND payment_method IS NOT NULL)
        OR (request_fingerprint IS NULL AND amount IS NULL AND currency IS NULL
            AND payment_method IS NULL AND status = 'voided')
    ),
    CONSTRAINT payment_intents_decline_code CHECK ((status = 'declined') = (decline_code IS NOT NULL))
);

CREATE UNIQUE INDEX payment_intents_seq ON payment_intents (seq);
CREATE INDEX payment_intents_status_seq ON payment_intents (status, seq);
