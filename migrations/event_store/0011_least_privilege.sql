-- Least privilege: each service connects as a login user of its own, member of one of
-- these group roles, with only the rights it needs. Migrations run as the owner of the
-- tables (a separate step: `command-api migrate`, `projector migrate`, `query-api
-- migrate`, `payment-gateway migrate`, or the owner's URL at start-up), so no service
-- can alter a table, a trigger or a function: the append-only guard and the hash chain
-- stay out of their reach.
--
-- The roles belong to the server, not the database, so creating them tolerates their
-- being there already (another database of the same server, a test run).
DO
$$
    DECLARE
        role text;
    BEGIN
        FOREACH role IN ARRAY ARRAY ['boxoffice_command', 'boxoffice_projector', 'boxoffice_query']
            LOOP
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', role);
                EXCEPTION
                    WHEN duplicate_object OR unique_violation THEN NULL;
                END;
            END LOOP;
    END
$$;

GRANT USAGE ON SCHEMA public TO boxoffice_command, boxoffice_projector, boxoffice_query;
GRANT SELECT ON _sqlx_migrations TO boxoffice_command, boxoffice_projector, boxoffice_query;

-- command-api: appends events (never updates, deletes or truncates them), writes what
-- the command side owns (sagas, keys, the outbox and its receipts, user keys).
GRANT SELECT, INSERT ON events TO boxoffice_command;
GRANT SELECT, INSERT, UPDATE ON snapshots TO boxoffice_command;
GRANT SELECT, INSERT, DELETE ON outbox TO boxoffice_command;
GRANT SELECT, INSERT ON append_receipts TO boxoffice_command;
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO boxoffice_command;
GRANT SELECT, INSERT, UPDATE ON booking_sagas, event_cancellation_sagas TO boxoffice_command;
GRANT SELECT, INSERT, UPDATE ON user_keys TO boxoffice_command;
GRANT SELECT ON store_identity, redactions TO boxoffice_command;

-- projector: reads the store (its sweep, gap filling, rebuilds).
GRANT SELECT ON events, redactions TO boxoffice_projector;

-- query-api: reads the store for the audit (history, state, verify, export), and the
-- user keys to open contact data for whoever may see it. Writes nothing here.
GRANT SELECT ON events, outbox, append_receipts, redactions, store_identity, user_keys
    TO boxoffice_query;
