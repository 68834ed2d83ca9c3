-- The event store.
--
-- `events` and `snapshots` have the columns postgres-es reads and writes. boxoffice adds
-- to `events`, with defaults so postgres-es need not know:
--   position        a global, unique, increasing number given at append time: the
--                   order of the outbox, of the wire envelope and of exports;
--   transaction_id  the appending transaction, so readers can tell which positions are
--                   final (no lower position can still commit once every transaction
--                   older than the reader's snapshot has ended).
-- Payload and metadata are jsonb: metadata is queried (correlation ids, idempotency).

CREATE TABLE events
(
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 1),
    event_type     text   NOT NULL,
    event_version  text   NOT NULL,
    payload        jsonb  NOT NULL,
    metadata       jsonb  NOT NULL,
    position       bigint NOT NULL GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8   NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_position_key ON events (position);

CREATE TABLE snapshots
(
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          jsonb  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- The transactional outbox: one row per appended event, written by the trigger below in
-- the appending transaction, so an event is published if and only if it was committed.
-- The relay publishes rows in position order and deletes them once the broker acked.
CREATE TABLE outbox
(
    position       bigint      PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    enqueued_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Idempotency-Key records, one per (user, key).
--   An accepted command's row is written by the trigger below, from the metadata of the
--   events it appends, in the appending transaction: a key is never recorded without
--   its events, nor events without their key. It says where the events went, from which
--   the first answer is rendered again.
--   A refused command appends nothing; its row (status and body of the refusal) is
--   written by the handler.
CREATE TABLE idempotency_keys
(
    user_id             text        NOT NULL,
    idempotency_key     text        NOT NULL,
    request_fingerprint text        NOT NULL,
    request_id          text        NOT NULL,
    aggregate_type      text,
    aggregate_id        text,
    last_sequence       bigint,
    response_status     smallint,
    response_body       jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key),
    CHECK ((last_sequence IS NULL) <> (response_status IS NULL))
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

CREATE FUNCTION boxoffice_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO outbox (position, aggregate_type, aggregate_id, sequence)
    VALUES (NEW.position, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);

    IF NEW.metadata ? 'idempotency_key' THEN
        -- An HTTP command's causation_id is its request id. A command appending
        -- several events comes here once per event: the first inserts, the others
        -- move last_sequence on. Another command holding the key
        -- (a concurrent retry) makes this append fail, and the handler answers with
        -- that command's result instead.
        INSERT INTO idempotency_keys AS k (user_id, idempotency_key, request_fingerprint, request_id,
                                           aggregate_type, aggregate_id, last_sequence)
        VALUES (NEW.metadata ->> 'user_id', NEW.metadata ->> 'idempotency_key',
                NEW.metadata ->> 'request_fingerprint', NEW.metadata ->> 'causation_id',
                NEW.aggregate_type, NEW.aggregate_id, NEW.sequence)
        ON CONFLICT (user_id, idempotency_key) DO UPDATE
            SET last_sequence = EXCLUDED.last_sequence
            WHERE k.request_id = EXCLUDED.request_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'idempotency key % is held by another command', NEW.metadata ->> 'idempotency_key'
                USING ERRCODE = 'BX409';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_appended
    AFTER INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION boxoffice_events_appended();
