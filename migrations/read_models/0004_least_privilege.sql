-- Least privilege on the read models (see the event store's 0011). The projector owns
-- the read-model tables (a rebuild builds fresh ones and swaps them in: only an owner
-- may drop and rename), and connects with `SET ROLE boxoffice_projector` so that the
-- tables it makes belong to the role, not to one login. query-api reads them, and
-- writes only its rebuild requests.
DO
$$
    DECLARE
        role text;
    BEGIN
        FOREACH role IN ARRAY ARRAY ['boxoffice_projector', 'boxoffice_query']
            LOOP
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', role);
                EXCEPTION
                    WHEN duplicate_object OR unique_violation THEN NULL;
                END;
            END LOOP;
    END
$$;

GRANT USAGE ON SCHEMA read_models TO boxoffice_projector, boxoffice_query;
GRANT CREATE ON SCHEMA read_models TO boxoffice_projector;
GRANT SELECT ON _sqlx_migrations TO boxoffice_projector, boxoffice_query;

-- Handing a table to a role takes being a member of it (unless a superuser runs this,
-- as the local stack and compose do; a managed database's owner is not one).
GRANT boxoffice_projector TO CURRENT_USER;

-- A rebuild cut short by the upgrade leaves its fresh table, owned by whoever ran the
-- projector before; the projector's role could not drop it. The rebuild is marked
-- failed on the projector's next start anyway: its table goes.
DO
$$
    DECLARE
        leftover text;
    BEGIN
        FOR leftover IN SELECT tablename FROM pg_tables
                         WHERE schemaname = current_schema() AND tablename LIKE '%\_\_rebuild'
            LOOP
                EXECUTE format('DROP TABLE %I', leftover);
            END LOOP;
    END
$$;

ALTER TABLE location_view OWNER TO boxoffice_projector;
ALTER TABLE event_view OWNER TO boxoffice_projector;
ALTER TABLE booking_view OWNER TO boxoffice_projector;
ALTER TABLE user_view OWNER TO boxoffice_projector;

GRANT SELECT, INSERT, UPDATE, DELETE ON projection_status, projection_rebuilds, store_sweep,
    rebuild_request_keys TO boxoffice_projector;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA read_models TO boxoffice_projector, boxoffice_query;

GRANT SELECT ON location_view, event_view, booking_view, user_view, projection_status,
    projection_rebuilds, store_sweep, rebuild_request_keys TO boxoffice_query;
GRANT INSERT ON projection_rebuilds TO boxoffice_query;
GRANT INSERT, UPDATE, DELETE ON rebuild_request_keys TO boxoffice_query;

-- Tables a rebuild makes are the projector role's; query-api may read them.
ALTER DEFAULT PRIVILEGES FOR ROLE boxoffice_projector IN SCHEMA read_models
    GRANT SELECT ON TABLES TO boxoffice_query;
