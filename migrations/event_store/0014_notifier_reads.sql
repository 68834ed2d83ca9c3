-- The notifier (its own group role, as in 0011) reads the store: booking facts to know
-- what to announce and to fill the gaps Kafka leaves, the event's facts for what a mail
-- says, and the user keys to open the contact data a booking carries. It writes
-- nothing here; its sent log is in its own schema (migrations/notifier).
DO
$$
    BEGIN
        CREATE ROLE boxoffice_notifier NOLOGIN;
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;
    END
$$;

GRANT USAGE ON SCHEMA public TO boxoffice_notifier;
GRANT SELECT ON events, user_keys TO boxoffice_notifier;
