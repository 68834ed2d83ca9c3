-- Payment methods (as Stripe's PaymentMethod): a card token exchanged once for a
-- reusable reference `pm_…`, so that the merchant never keeps the token. A create of a
-- payment intent may name one instead of a card token; it is resolved to card_token in
-- the create's transaction. Rows are never updated or deleted.
--
-- The Idempotency-Key of a payment method is optional, and its own namespace (apart
-- from payment_intents'): a key and the fingerprint of the request that used it go
-- together.

CREATE TABLE payment_methods (
    id                  text PRIMARY KEY,
    -- The card token: the gateway is the one place allowed to keep it. Never returned.
    card_token          text NOT NULL,
    idempotency_key     text UNIQUE,
    request_fingerprint text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_methods_key_with_fingerprint
        CHECK ((idempotency_key IS NULL) = (request_fingerprint IS NULL))
);
