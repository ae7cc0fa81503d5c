-- The audit log (state/audit): append-only, each entry hash-chained to the one before it.
--
-- seq numbers entries 1, 2, 3, … with no gaps: the next number is taken from audit_head, the
-- single row that also holds the newest entry's hash, and appenders lock that row (SELECT …
-- FOR UPDATE) inside their own transaction, so two transactions never chain onto the same
-- entry and a rolled-back transaction leaves neither an entry nor a gap.
--
-- details is the entry's details as canonical JSON text (sorted keys, compact, ASCII), exactly
-- the text that went into the hash; query it with details::jsonb.
CREATE TABLE audit_log (
    seq           bigint PRIMARY KEY CHECK (seq > 0),
    at            timestamptz NOT NULL,
    actor         text,
    action        text NOT NULL,
    resource_type text,
    resource_id   text,
    details       text NOT NULL,
    prev_hash     text NOT NULL,
    hash          text NOT NULL
);

CREATE INDEX audit_log_action_idx ON audit_log (action, seq);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, seq);
CREATE INDEX audit_log_resource_idx ON audit_log (resource_type, resource_id, seq);
CREATE INDEX audit_log_at_idx ON audit_log (at, seq);

CREATE TABLE audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint NOT NULL,
    hash     text NOT NULL
);

INSERT INTO audit_head (only_row, seq, hash) VALUES (true, 0, repeat('0', 64));

-- Append-only, enforced by the database whoever the app connects as (the table's owner
-- included): UPDATE, DELETE and TRUNCATE of entries raise. A superuser can still get past this
-- (ALTER TABLE … DISABLE TRIGGER, session_replication_role = replica), and that is what the
-- hash chain is for: `staffgraph audit verify` names the first entry that no longer fits.
CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_head_keep BEFORE DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();

-- The head moves one entry at a time, and only onto an entry that exists with that hash.
CREATE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
        SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash AND prev_hash = OLD.hash
    ) THEN
        RAISE EXCEPTION 'the audit head only moves onto the next entry (at %, asked %)',
            OLD.seq, NEW.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward();

-- Privileges as well, for a database where the app is not a superuser: nobody but a superuser
-- may change entries. Revoking from CURRENT_USER takes the rights from the owner too (an owner
-- could grant them back to itself, but the triggers above still refuse).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM CURRENT_USER;
REVOKE DELETE, TRUNCATE ON audit_head FROM PUBLIC;
REVOKE DELETE, TRUNCATE ON audit_head FROM CURRENT_USER;
