-- Poison events are parked, not skipped. An event a projection cannot apply (a newer
-- event_version than this projector reads, during a rolling deploy; a payload it cannot
-- decode) stops its own stream's row at the event before, and is recorded here with the
-- error; other streams go on. The projector tries a parked event again at start-up,
-- every PROJECTOR_PARKED_RETRY_MS, when its stream gets a new event, and at once when
-- an admin asks (POST /v1/admin/parked/{position}/retry sets retry_requested_at). The
-- row goes once the event applies.
CREATE TABLE parked_events
(
    position           bigint PRIMARY KEY,
    projection         text        NOT NULL,
    aggregate_type     text        NOT NULL,
    aggregate_id       uuid        NOT NULL,
    sequence           bigint      NOT NULL,
    event_type         text        NOT NULL,
    event_version      text        NOT NULL,
    error              text        NOT NULL,
    attempts           integer     NOT NULL DEFAULT 1,
    parked_at          timestamptz NOT NULL DEFAULT now(),
    last_attempt_at    timestamptz NOT NULL DEFAULT now(),
    retry_requested_at timestamptz,
    UNIQUE (projection, aggregate_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON parked_events TO boxoffice_projector;
GRANT SELECT, UPDATE (retry_requested_at) ON parked_events TO boxoffice_query;
