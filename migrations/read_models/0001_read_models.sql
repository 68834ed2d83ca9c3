-- The read models, in the read_models schema (the read pool's search_path).
--
-- Each row is a pure function of its aggregate's events up to `last_sequence`: the
-- projector loads a row, applies the events after `last_sequence` (from Kafka, or from
-- the event store to fill a gap) and writes it back only if it moved forward. Redelivered
-- and duplicated messages therefore change nothing, and two writers of one row agree.
-- Times come from the events' `recorded_at`, never from the projector's clock, so a
-- rebuild gives the same rows as the live projection.

CREATE TABLE location_view
(
    id            uuid PRIMARY KEY,
    name          text        NOT NULL,
    address       text        NOT NULL,
    country       text        NOT NULL,
    halls         jsonb       NOT NULL, -- [{"name", "capacity"}], in the order added
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_sequence bigint      NOT NULL
);

CREATE TABLE event_view
(
    id              uuid PRIMARY KEY,
    name            text        NOT NULL,
    location_id     uuid        NOT NULL,
    location_name   text        NOT NULL,
    hall            text        NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    price_cents     bigint      NOT NULL,
    currency        text        NOT NULL,
    capacity        integer     NOT NULL,
    seats_held      integer     NOT NULL,
    seats_sold      integer     NOT NULL,
    seats_available integer     NOT NULL,
    status          text        NOT NULL, -- scheduled | cancelled
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    last_sequence   bigint      NOT NULL
);

CREATE INDEX event_view_starts ON event_view (starts_at, id);
CREATE INDEX event_view_location ON event_view (location_id, starts_at, id);

CREATE TABLE booking_view
(
    id            uuid PRIMARY KEY,
    event_id      uuid        NOT NULL,
    user_id       text        NOT NULL,
    seats         integer     NOT NULL,
    amount_cents  bigint      NOT NULL,
    currency      text        NOT NULL,
    status        text        NOT NULL, -- pending | confirmed | rejected | cancelled
    reason        text,
    refunded      boolean     NOT NULL,
    history       jsonb       NOT NULL, -- [{"status", "at"}]
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_sequence bigint      NOT NULL
);

CREATE INDEX booking_view_user ON booking_view (user_id, id);
CREATE INDEX booking_view_event ON booking_view (event_id);

-- What each projection has applied: for status, lag and read-your-writes diagnostics.
CREATE TABLE projection_status
(
    name             text PRIMARY KEY,
    applied_position bigint NOT NULL DEFAULT 0, -- the highest store position applied
    applied_events   bigint NOT NULL DEFAULT 0,
    last_applied_at  timestamptz,               -- when, by the projector's clock
    last_event_at    timestamptz                -- recorded_at of the newest event applied
);

INSERT INTO projection_status (name)
VALUES ('locations'), ('events'), ('bookings');

-- Rebuilds, requested by `POST /v1/admin/projections/{name}/rebuild` or run by
-- `projector rebuild`, with their progress.
CREATE TABLE projection_rebuilds
(
    id           bigserial PRIMARY KEY,
    projection   text        NOT NULL,
    status       text        NOT NULL, -- requested | running | done | failed
    events_total bigint,
    events_done  bigint      NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    error        text
);

CREATE INDEX projection_rebuilds_open ON projection_rebuilds (projection, id) WHERE status IN ('requested', 'running');

-- The projector's sweep through the event store: everything before this cursor, in
-- (transaction_id, position) order, is applied.
-- (The transaction id is the store's xid8, kept as a number: the read models may live in
-- another database.)
CREATE TABLE store_sweep
(
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    transaction_id bigint  NOT NULL DEFAULT 0,
    position       bigint  NOT NULL DEFAULT 0
);

INSERT INTO store_sweep DEFAULT VALUES;
