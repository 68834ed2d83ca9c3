-- `Idempotency-Key` on POST /v1/admin/projections/{name}/rebuild: a key the same
-- admin used before, with the same request, answers the rebuild it asked for then, even
-- once that rebuild is done, and asks for nothing new. Recorded in the transaction that
-- answers the request; kept as long as the command side's keys
-- (`BOXOFFICE_IDEMPOTENCY_TTL_HOURS`, default 24).
CREATE TABLE rebuild_request_keys
(
    user_id             text        NOT NULL,
    idempotency_key     text        NOT NULL,
    request_fingerprint text        NOT NULL,
    rebuild_id          bigint      NOT NULL REFERENCES projection_rebuilds (id),
    projection          text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);
