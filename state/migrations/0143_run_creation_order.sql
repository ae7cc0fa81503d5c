-- A run's created_at is the moment its row is inserted, not its transaction's start.
--
-- The queue runs a thread's pending runs in created_at order (staffgraph_claim_runs,
-- staffgraph_finish_run), and the thread's join follows them in that order. now() is the same
-- for every row of a transaction, so runs created together (the crons of one batch firing on
-- one thread) tied, and the queue took whichever the table returned first. clock_timestamp()
-- advances within a transaction; updated_at starts equal to it, and a run claimed as it is
-- created (started_at, stamped now() by staffgraph_create_run) is not started before it exists.

CREATE FUNCTION staffgraph_stamp_run_creation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_at := clock_timestamp();
    NEW.updated_at := NEW.created_at;
    IF NEW.started_at < NEW.created_at THEN
        NEW.started_at := NEW.created_at;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER runs_stamp_creation BEFORE INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION staffgraph_stamp_run_creation();
