-- The notifier's own tables, in the schema `notifier` of the event store's database.
-- Nothing here names a person: a notification is known by the fact it announces
-- (booking id and sequence); the address is read, opened and used only while sending.

-- How far each booking's stream has been taken in, so a fact delivered twice (a replay,
-- a new consumer group, a broker that lost its data and got everything again) is taken
-- in once, and a gap (a message Kafka never brought) is seen and filled from the store.
CREATE TABLE streams
(
    booking_id    uuid PRIMARY KEY,
    sequence      bigint NOT NULL CHECK (sequence > 0),
    -- Why the booking was cancelled, once it was: its refund's mail depends on it.
    cancel_reason text
);

-- One row per notification, written in the transaction that takes its fact in; the
-- sender moves it on. status: pending (to send, at next_attempt_at), sent, parked (a
-- permanent refusal, or too many attempts: an operator retries it), no_contact (the
-- booking carries no e-mail address), erased (the user's key is destroyed).
CREATE TABLE notifications
(
    booking_id      uuid        NOT NULL,
    sequence        bigint      NOT NULL,
    position        bigint      NOT NULL,
    kind            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'parked', 'no_contact', 'erased')),
    message_id      text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Taken by a sender until then; after it (the sender died) another takes it.
    lease_until     timestamptz,
    -- The SMTP answer (addresses in it are masked) or what stopped the composing.
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Since when it waits to be sent: its intake, or an operator's retry or resend.
    pending_since   timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    -- How often an operator asked for it again (`notifier resend`).
    resends         integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (booking_id, sequence)
);

CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_parked ON notifications (created_at) WHERE status = 'parked';

-- One row: where the sweep of the store stands, and from which fact on the notifier
-- mails. Facts recorded before the notifier first ran are history: a notifier deployed
-- onto a store of a year of bookings does not write to all those customers. At the
-- first start, one snapshot of the store is kept: since_position, the newest committed
-- position then, and since_snapshot itself. A fact is news when its position is past
-- since_position, or its transaction had not committed in that snapshot (it may have
-- committed after the start with a lower position). The sweep starts at the oldest
-- transaction running then: every older one had ended, and is history.
CREATE TABLE progress
(
    only_row       boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    since_position bigint      NOT NULL,
    since_snapshot pg_snapshot NOT NULL,
    transaction_id bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0
);

-- Least privilege, as everywhere: the notifier's login is in this group role; it may
-- read and write its rows, not alter the tables, and never delete the log.
DO
$$
    BEGIN
        CREATE ROLE boxoffice_notifier NOLOGIN;
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;
    END
$$;

GRANT USAGE ON SCHEMA notifier TO boxoffice_notifier;
GRANT SELECT ON _sqlx_migrations TO boxoffice_notifier;
GRANT SELECT, INSERT, UPDATE ON streams, notifications, progress TO boxoffice_notifier;
