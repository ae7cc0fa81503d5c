-- A cancel accepted while its run was running always takes effect, however late it reached the
-- worker. The cancel flags the run (runs.cancel_action) under the thread's row lock; the worker
-- learns of it by a signal, which can miss: the run was being claimed and not yet registered,
-- the graph had just finished, or the graph swallowed the task's cancellation. So the statement
-- that records the end, under the same lock, now compares the flag with what the worker
-- recorded: an outcome that does not carry out the flagged cancel is refused (outcome
-- 'cancelled', cancel_action says which) and the worker records the cancel instead. A rollback
-- outcome satisfies an interrupt too (the stronger of two cancels wins).
--
-- staffgraph_finish_run gains p_cancel_action: the cancel this outcome carries out, NULL for a
-- run that ended by itself. Callers of the twelve-argument form get the check as well.

DROP FUNCTION staffgraph_finish_run(
    uuid, uuid, bigint, text, text, jsonb, jsonb, jsonb, boolean, text, double precision, jsonb
);

CREATE FUNCTION staffgraph_finish_run(
    p_run_id uuid,
    p_thread_id uuid,
    p_token bigint,
    p_status text,
    p_thread_status text,
    p_values jsonb,
    p_interrupts jsonb,
    p_error jsonb,
    p_delete_run boolean,
    p_owner text,
    p_lease_seconds double precision,
    p_usage jsonb DEFAULT NULL,
    p_cancel_action text DEFAULT NULL
) RETURNS TABLE (outcome text, thread_deleted boolean, next_run jsonb, cancel_action text)
LANGUAGE plpgsql AS $$
DECLARE
    v_found boolean;
    v_temporary boolean := false;
    v_on_completion text;
    v_cancel text;
    v_queued boolean;
    v_next runs%ROWTYPE;
    v_next_json jsonb;
BEGIN
    PERFORM 1 FROM threads WHERE thread_id = p_thread_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_thread'::text, true, NULL::jsonb, NULL::text;
        RETURN;
    END IF;

    SELECT r.temporary, r.on_completion,
           CASE WHEN r.fencing_token = p_token AND r.status = 'running' THEN r.cancel_action END
      INTO v_temporary, v_on_completion, v_cancel
      FROM runs r WHERE r.run_id = p_run_id;
    v_found := FOUND;
    IF v_cancel = 'rollback' AND p_cancel_action IS DISTINCT FROM 'rollback'
       OR v_cancel = 'interrupt' AND p_cancel_action IS NULL THEN
        -- Nothing written: the worker records the flagged cancel instead.
        RETURN QUERY SELECT 'cancelled'::text, false, NULL::jsonb, v_cancel;
        RETURN;
    END IF;
    IF v_found THEN
        IF p_delete_run THEN
            DELETE FROM runs WHERE run_id = p_run_id AND fencing_token = p_token
                                AND status = 'running';
        ELSE
            UPDATE runs
               SET status = p_status, error = p_error, ended_at = now(), updated_at = now(),
                   lease_owner = NULL, lease_expires_at = NULL,
                   usage = coalesce(p_usage, usage)
             WHERE run_id = p_run_id AND fencing_token = p_token AND status = 'running';
        END IF;
        IF NOT FOUND THEN
            -- Another worker holds a newer lease: its result, not ours, counts.
            RETURN QUERY SELECT 'stale'::text, false, NULL::jsonb, NULL::text;
            RETURN;
        END IF;
    END IF;

    v_queued := EXISTS (SELECT 1 FROM runs
                         WHERE thread_id = p_thread_id AND status IN ('pending', 'running'));

    IF v_temporary AND v_on_completion = 'delete' AND NOT v_queued THEN
        DELETE FROM threads WHERE thread_id = p_thread_id;
        RETURN QUERY SELECT 'finished'::text, true, NULL::jsonb, NULL::text;
        RETURN;
    END IF;

    UPDATE threads
       SET status = CASE WHEN v_queued THEN 'busy' ELSE p_thread_status END,
           "values" = CASE WHEN p_values IS NULL THEN "values" ELSE p_values END,
           interrupts = coalesce(p_interrupts, '{}'),
           error = p_error,
           updated_at = now(),
           state_updated_at = now()
     WHERE thread_id = p_thread_id;

    IF p_owner IS NOT NULL AND v_queued
       AND NOT EXISTS (SELECT 1 FROM runs WHERE thread_id = p_thread_id AND status = 'running')
    THEN
        UPDATE runs
           SET status = 'running', lease_owner = p_owner,
               lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               attempt = attempt + 1, fencing_token = fencing_token + 1,
               started_at = coalesce(started_at, now()), updated_at = now()
         WHERE run_id = (SELECT r.run_id FROM runs r
                          WHERE r.thread_id = p_thread_id AND r.status = 'pending'
                            AND r.available_at <= now()
                          ORDER BY r.created_at LIMIT 1)
        RETURNING * INTO v_next;
        IF FOUND THEN
            v_next_json := to_jsonb(v_next);
        END IF;
    END IF;

    RETURN QUERY SELECT 'finished'::text, false, v_next_json, NULL::text;
END;
$$;
