-- The lease fence of a run's writes as one statement that fails instead of returning nothing.
--
-- A checkpoint write inside a run first checks that the run is still 'running' under the
-- worker's fencing token, holding the row FOR SHARE until the write commits (state/fencing.py).
-- As a SELECT the check needs its own round trip: the client reads the answer before sending
-- the writes. As a function that raises, it can travel in the same pipeline as the writes and
-- the COMMIT: a lost lease aborts the transaction, so nothing after it is written, and the
-- client learns of it from the error (SQLSTATE SGL01) when the pipeline syncs.

CREATE FUNCTION staffgraph_check_fence(p_run_id uuid, p_token bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM runs
     WHERE run_id = p_run_id AND fencing_token = p_token AND status = 'running'
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % is no longer held with lease token %', p_run_id, p_token
            USING ERRCODE = 'SGL01';
    END IF;
END;
$$;
