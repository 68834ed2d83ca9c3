-- Tamper evidence: a hash chain per stream, and a receipt per append.
--
-- events.hash = sha256(hash of the previous event of the same stream || the event),
-- computed by a BEFORE INSERT trigger in the appending transaction. It reads only the
-- stream's previous event (the primary key), so writers of different streams never
-- wait for each other; writers of one stream are already serialized by the primary key.
-- Changing an event's content breaks its own hash; deleting, inserting or reordering
-- events of a stream breaks the link of the next one.
--
-- The chain cannot show that the LAST events of a stream were deleted: nothing after
-- them links to them. So every event is also named, with its hash, outside its stream:
-- by its outbox row until the relay has published it, then by an append receipt the
-- relay writes in the transaction that deletes the outbox rows it published (one row
-- per published batch). Verification (query-api: GET /v1/audit/verify,
-- `query-api audit verify`) checks both ways: every event against its stream, and
-- every event the outbox and the receipts name against the store. The receipts cost
-- the appending transaction nothing but the hash in the outbox row; an earlier
-- version wrote them from a statement trigger on events and cost appends about 18%.

-- What this does not stop: someone who can write to the database and appends through
-- the triggers gets a valid chain and receipt, like any writer. Evidence against that
-- needs the heads kept outside the database (exported and signed); see the README.

-- The bytes that are hashed for one event: its fields separated by the ASCII unit
-- separator (0x1f), which none of them contains (ids and types are ours; JSON text
-- escapes control characters), so no two different events have the same bytes.
-- jsonb's text form is canonical (keys sorted, fixed spacing), so the same stored
-- event always gives the same bytes.
CREATE FUNCTION boxoffice_event_hash(previous bytea, aggregate_type text, aggregate_id text,
                                     sequence bigint, "position" bigint, event_type text,
                                     event_version text, payload jsonb, metadata jsonb)
    RETURNS bytea
    LANGUAGE sql
    IMMUTABLE
    PARALLEL SAFE
RETURN sha256(coalesce(previous, ''::bytea) ||
              convert_to(concat_ws(E'\x1f', aggregate_type, aggregate_id, sequence, "position",
                                   event_type, event_version, payload::text, metadata::text),
                         'UTF8'));

ALTER TABLE events
    ADD COLUMN hash bytea;

-- Events stored before this migration get their chain now, stream by stream, and one
-- receipt per transaction that appended them.
DO
$$
    DECLARE
        e        record;
        previous bytea;
    BEGIN
        FOR e IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence
            LOOP
                IF e.sequence = 1 THEN
                    previous := NULL;
                END IF;
                previous := boxoffice_event_hash(previous, e.aggregate_type, e.aggregate_id, e.sequence,
                                                 e.position, e.event_type, e.event_version, e.payload,
                                                 e.metadata);
                UPDATE events
                   SET hash = previous
                 WHERE aggregate_type = e.aggregate_type
                   AND aggregate_id = e.aggregate_id
                   AND sequence = e.sequence;
            END LOOP;
    END
$$;

ALTER TABLE events
    ALTER COLUMN hash SET NOT NULL;

CREATE FUNCTION boxoffice_chain_event() RETURNS trigger
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
    NEW.hash := boxoffice_event_hash(previous, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
                                     NEW.position, NEW.event_type, NEW.event_version, NEW.payload,
                                     NEW.metadata);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_chain
    BEFORE INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION boxoffice_chain_event();

-- The hash of every event travels in its outbox row...
ALTER TABLE outbox
    ADD COLUMN hash bytea;

UPDATE outbox o
   SET hash = e.hash
  FROM events e
 WHERE e.position = o.position;

CREATE OR REPLACE FUNCTION boxoffice_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO outbox (position, aggregate_type, aggregate_id, sequence, hash)
    VALUES (NEW.position, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.hash);

    IF NEW.metadata ? 'idempotency_key' THEN
        -- (as in 0001_event_store.sql)
        INSERT INTO idempotency_keys AS k (user_id, idempotency_key, request_fingerprint, request_id,
                                           aggregate_type, aggregate_id, last_sequence)
        VALUES (NEW.metadata ->> 'user_id', NEW.metadata ->> 'idempotency_key',
                NEW.metadata ->> 'request_fingerprint', NEW.metadata ->> 'causation_id',
                NEW.aggregate_type, NEW.aggregate_id, NEW.sequence)
        ON CONFLICT (user_id, idempotency_key) DO UPDATE
            SET last_sequence = EXCLUDED.last_sequence
            WHERE k.request_id = EXCLUDED.request_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'idempotency key % is held by another command', NEW.metadata ->> 'idempotency_key'
                USING ERRCODE = 'BX409';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- ... and into a receipt when the relay has published it: one row per published
-- batch, written with the DELETE of its outbox rows.
CREATE TABLE append_receipts
(
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    positions       bigint[]    NOT NULL,
    aggregate_types text[]      NOT NULL,
    aggregate_ids   text[]      NOT NULL,
    sequences       bigint[]    NOT NULL,
    hashes          bytea[]     NOT NULL
);

-- Events published before this migration.
INSERT INTO append_receipts (positions, aggregate_types, aggregate_ids, sequences, hashes)
SELECT array_agg(e.position ORDER BY e.position),
       array_agg(e.aggregate_type ORDER BY e.position),
       array_agg(e.aggregate_id ORDER BY e.position),
       array_agg(e.sequence ORDER BY e.position),
       array_agg(e.hash ORDER BY e.position)
  FROM events e
 WHERE NOT EXISTS (SELECT FROM outbox o WHERE o.position = e.position)
HAVING count(*) > 0;

-- The store is append-only. This stops mistakes, not an owner of the table (who can
-- disable the trigger): the chain and the receipts are what show such changes.
CREATE FUNCTION boxoffice_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'the event store is append-only: % on events refused', TG_OP
        USING ERRCODE = 'BX403';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION boxoffice_events_append_only();
