-- A run flagged for rollback whose worker stopped (killed, or it could not record the cancel)
-- goes back to the queue instead of being marked interrupted: the worker that claims it next
-- sees the flag and records the rollback without running the graph (its checkpoints deleted,
-- the run removed), as the cancel promised. An interrupt is still settled by the sweeper. After
-- p_max_attempts a rollback-flagged run is marked interrupted, as before.
--
-- The outcome of a run settled because of its cancel is now 'interrupted' (was 'failed', which
-- is left for runs that failed: the caller logs those as errors and ends their streams so).

CREATE OR REPLACE FUNCTION staffgraph_sweep_runs(p_max_attempts integer)
RETURNS TABLE (run_id uuid, thread_id uuid, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    lapsed record;
BEGIN
    FOR lapsed IN
        SELECT r.run_id, r.thread_id, r.attempt, r.cancel_action FROM runs r
         WHERE r.status = 'running' AND r.lease_expires_at < now()
         ORDER BY r.lease_expires_at
         LIMIT 100
    LOOP
        PERFORM 1 FROM threads t WHERE t.thread_id = lapsed.thread_id FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        IF lapsed.attempt >= p_max_attempts OR lapsed.cancel_action = 'interrupt' THEN
            UPDATE runs r
               SET status = CASE WHEN lapsed.cancel_action IS NULL THEN 'error'
                                 ELSE 'interrupted' END,
                   error = CASE WHEN lapsed.cancel_action IS NULL THEN jsonb_build_object(
                       'error', 'WorkerLost',
                       'message', 'the worker running this run stopped responding')
                   END,
                   lease_owner = NULL, lease_expires_at = NULL, ended_at = now(),
                   updated_at = now()
             WHERE r.run_id = lapsed.run_id AND r.status = 'running'
               AND r.lease_expires_at < now();
            CONTINUE WHEN NOT FOUND;
            UPDATE threads t
               SET status = CASE
                       WHEN EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = lapsed.thread_id
                                      AND o.status IN ('pending', 'running')) THEN 'busy'
                       WHEN lapsed.cancel_action IS NULL THEN 'error'
                       ELSE 'interrupted' END,
                   updated_at = now()
             WHERE t.thread_id = lapsed.thread_id;
            RETURN QUERY SELECT lapsed.run_id, lapsed.thread_id,
                CASE WHEN lapsed.cancel_action IS NULL THEN 'failed' ELSE 'interrupted' END;
        ELSE
            UPDATE runs r
               SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                   available_at = now(), updated_at = now()
             WHERE r.run_id = lapsed.run_id AND r.status = 'running'
               AND r.lease_expires_at < now();
            CONTINUE WHEN NOT FOUND;
            RETURN QUERY SELECT lapsed.run_id, lapsed.thread_id, 'requeued'::text;
        END IF;
    END LOOP;
    IF FOUND THEN
        PERFORM pg_notify('staffgraph_runs', '');
    END IF;
END;
$$;
