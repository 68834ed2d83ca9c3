-- The chain trigger computes the hash with the expression of boxoffice_event_hash
-- written out in place, instead of calling that SQL function from PL/pgSQL: the call
-- went through the SQL-function executor for every appended event and cost appends
-- about as much as the hashing itself. The bytes hashed are the same (the audit
-- verification still calls boxoffice_event_hash, inlined in its query), so stored
-- hashes stay valid; keep the two expressions identical.
CREATE OR REPLACE FUNCTION boxoffice_chain_event() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    previous bytea;
BEGIN
    IF NEW.sequence > 1 THEN
        -- Sees rows inserted earlier by the same statement, too (a command appending
        -- several events of one stream in one INSERT).
        SELECT hash
          INTO previous
          FROM events
         WHERE aggregate_type = NEW.aggregate_type
           AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'event % of %/% does not follow a stored event', NEW.sequence,
                NEW.aggregate_type, NEW.aggregate_id
                USING ERRCODE = 'BX422';
        END IF;
    END IF;
    NEW.hash := sha256(coalesce(previous, ''::bytea) ||
                       convert_to(concat_ws(E'\x1f', NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
                                            NEW."position", NEW.event_type, NEW.event_version,
                                            NEW.payload::text, NEW.metadata::text),
                                  'UTF8'));
    RETURN NEW;
END
$$;
