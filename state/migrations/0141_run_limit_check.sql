-- Runs at once per caller (STAFFGRAPH_MAX_CONCURRENT_RUNS) checked by one statement that fails
-- when the caller is at the limit, so the check and the run's creation travel in one pipeline
-- (one round trip) instead of a transaction of five statements.
--
-- It takes the caller's transaction-scoped advisory lock (key space 80, as before), so two
-- concurrent creations by one caller cannot both take the last slot, counts the caller's
-- pending and running runs (index runs_user_inflight, migration 0080), and raises SQLSTATE
-- SGR29 at the limit. Sent before staffgraph_create_run in the same transaction: a refusal
-- aborts it, so no run is created.

CREATE FUNCTION staffgraph_check_run_limit(p_user text, p_max integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(80, hashtext(p_user));
    SELECT count(*) INTO n FROM runs
     WHERE status IN ('pending', 'running')
       AND kwargs -> 'config' -> 'configurable' ->> 'langgraph_auth_user_id' = p_user;
    IF n >= p_max THEN
        RAISE EXCEPTION 'caller % has % runs in flight (limit %)', p_user, n, p_max
            USING ERRCODE = 'SGR29';
    END IF;
END;
$$;
