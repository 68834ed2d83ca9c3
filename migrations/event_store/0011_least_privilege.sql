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
GRANT SELECT ON snapshots TO boxoffice_command;
GRANT SELECT, INSERT, DELETE ON outbox TO boxoffice_command;
GRANT SELECT, INSERT ON append_receipts TO boxoffice_command;
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO boxoffice_command;
GRANT SELECT, INSERT, UPDATE ON booking_sagas, event_cancellation_sagas TO boxoffice_command;
GRANT SELECT, INSERT, UPDATE ON user_keys TO boxoffice_command;
GRANT SELECT ON store_identity TO boxoffice_command;

-- projector: reads the store (its sweep, gap filling, rebuilds).
GRANT SELECT ON events TO boxoffice_projector;

-- query-api: reads the store for the audit (history, state, verify, export), and the
-- user keys to open contact data for whoever may see it. Writes nothing here.
GRANT SELECT ON events, outbox, append_receipts, redactions, user_keys TO boxoffice_query;

-- A destroyed key stays destroyed: its secret may go from a value to NULL, never back
-- (an UPDATE that would restore one, by a service or by a bug, fails). Integrity of
-- the table itself, not policy: when to destroy is command-api's decision.
CREATE FUNCTION boxoffice_user_keys_one_way() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF OLD.secret IS NULL AND NEW.secret IS NOT NULL THEN
        RAISE EXCEPTION 'user key % was destroyed; it cannot be restored', OLD.key_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.key_id <> OLD.key_id OR NEW.user_id <> OLD.user_id THEN
        RAISE EXCEPTION 'a user key keeps its id and its user'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.secret IS NOT NULL AND NEW.secret IS NOT NULL AND NEW.secret <> OLD.secret THEN
        RAISE EXCEPTION 'a user key''s secret never changes; it is only destroyed'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER user_keys_one_way
    BEFORE UPDATE ON user_keys
    FOR EACH ROW
EXECUTE FUNCTION boxoffice_user_keys_one_way();

-- Nobody but the owner makes objects in the store's schema (PostgreSQL 15 already
-- denies it by default; a database upgraded from an older one may still allow it).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
