-- Personal data in the read models: a booking keeps its owner's contact data in the
-- sealed form the event carries (never in clear: query-api opens it for its owner and
-- for admins while the key lives), and the `users` projection records the erasures, so
-- that contacts sealed under erased keys show as erased.
ALTER TABLE booking_view
    ADD COLUMN contact jsonb;

CREATE TABLE user_view
(
    id            uuid PRIMARY KEY,
    user_id       text        NOT NULL,
    erased_keys   uuid[]      NOT NULL,
    erased_at     timestamptz NOT NULL,
    last_sequence bigint      NOT NULL
);

CREATE INDEX user_view_user ON user_view (user_id);

INSERT INTO projection_status (name)
VALUES ('users');
