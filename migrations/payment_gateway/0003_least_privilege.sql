-- Least privilege (as boxoffice's own migrations do): the gateway connects as a login
-- user of its own in the group role boxoffice_payments, which may read and write its
-- books but not alter them. Migrations run as the owner, in a separate step
-- (`payment-gateway migrate`) or at start-up with the owner's URL.
DO
$$
    BEGIN
        CREATE ROLE boxoffice_payments NOLOGIN;
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;
    END
$$;

GRANT USAGE ON SCHEMA payment_gateway TO boxoffice_payments;
GRANT SELECT ON _sqlx_migrations TO boxoffice_payments;
GRANT SELECT, INSERT, UPDATE ON payment_intents TO boxoffice_payments;
-- A payment method never changes once made.
GRANT SELECT, INSERT ON payment_methods TO boxoffice_payments;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA payment_gateway TO boxoffice_payments;
