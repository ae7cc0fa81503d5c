-- The run queue's decisions, each made in ONE round trip under the thread's row lock.
--
-- Every function below locks the thread row first. That lock is what serialises concurrent
-- clients on a thread (multitask strategies) and concurrent workers (one running run per
-- thread). PL/pgSQL takes a fresh snapshot per statement under READ COMMITTED, so the checks
-- that follow the lock see every run committed before it was granted.

ALTER TABLE runs ADD COLUMN cancel_action text
    CHECK (cancel_action IN ('interrupt', 'rollback'));

CREATE INDEX runs_thread_inflight ON runs (thread_id, created_at)
    WHERE status IN ('pending', 'running');


-- Create a run: resolve the assistant, create the thread if asked, apply the multitask
-- strategy, insert the run and mark the thread busy. When p_owner is given and nothing else is
-- queued on the thread, the run is inserted already claimed by p_owner (the caller starts it
-- at once: no queue hop on the hot path); otherwise it waits as 'pending' and workers are woken.
CREATE FUNCTION staffgraph_create_run(
    p_run_id uuid,
    p_thread_id uuid,
    p_assistant_id uuid,
    p_metadata jsonb,
    p_kwargs jsonb,
    p_config jsonb,
    p_context jsonb,
    p_strategy text,
    p_if_not_exists text,
    p_temporary boolean,
    p_on_completion text,
    p_after_seconds double precision,
    p_owner text,
    p_lease_seconds double precision
) RETURNS TABLE (
    outcome text,
    graph_id text,
    run jsonb,
    cancel_ids uuid[],
    settled_ids uuid[]
) LANGUAGE plpgsql AS $$
DECLARE
    a assistants%ROWTYPE;
    t_meta jsonb;
    v_running uuid[];
    v_pending uuid[];
    v_start boolean;
    v_config jsonb;
    v_kwargs jsonb;
    v_row runs%ROWTYPE;
BEGIN
    SELECT * INTO a FROM assistants WHERE assistant_id = p_assistant_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_assistant'::text, NULL::text, NULL::jsonb, NULL::uuid[], NULL::uuid[];
        RETURN;
    END IF;

    IF p_if_not_exists = 'create' THEN
        INSERT INTO threads (thread_id, metadata)
        VALUES (p_thread_id, jsonb_build_object('graph_id', a.graph_id,
                                                'assistant_id', a.assistant_id))
        ON CONFLICT (thread_id) DO NOTHING;
    END IF;

    SELECT metadata INTO t_meta FROM threads WHERE thread_id = p_thread_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_thread'::text, a.graph_id, NULL::jsonb, NULL::uuid[], NULL::uuid[];
        RETURN;
    END IF;

    SELECT array_agg(r.run_id) FILTER (WHERE r.status = 'running'),
           array_agg(r.run_id) FILTER (WHERE r.status = 'pending')
      INTO v_running, v_pending
      FROM runs r
     WHERE r.thread_id = p_thread_id AND r.status IN ('pending', 'running');

    IF v_running IS NOT NULL OR v_pending IS NOT NULL THEN
        IF p_strategy = 'reject' THEN
            RETURN QUERY SELECT 'conflict'::text, a.graph_id, NULL::jsonb, NULL::uuid[],
                                NULL::uuid[];
            RETURN;
        ELSIF p_strategy IN ('interrupt', 'rollback') THEN
            -- Running runs stop when their worker sees the signal; the new run waits for
            -- them. Queued ones never started, so they are settled here and now.
            UPDATE runs SET cancel_action = p_strategy, updated_at = now()
             WHERE run_id = ANY (v_running);
            IF p_strategy = 'rollback' THEN
                DELETE FROM runs WHERE run_id = ANY (v_pending);
            ELSE
                UPDATE runs SET status = 'interrupted', ended_at = now(), updated_at = now()
                 WHERE run_id = ANY (v_pending);
            END IF;
        END IF;
    END IF;

    v_start := p_owner IS NOT NULL AND coalesce(p_after_seconds, 0) <= 0
               AND v_running IS NULL
               AND (v_pending IS NULL OR p_strategy IN ('interrupt', 'rollback'));

    v_config := coalesce(a.config, '{}') || coalesce(p_config, '{}') || jsonb_build_object(
        'configurable',
        coalesce(a.config -> 'configurable', '{}') || coalesce(p_config -> 'configurable', '{}')
            || jsonb_build_object('graph_id', a.graph_id, 'assistant_id', a.assistant_id),
        'metadata',
        coalesce(a.metadata, '{}') || coalesce(t_meta, '{}')
            || coalesce(p_config -> 'metadata', '{}') || coalesce(p_metadata, '{}')
            || jsonb_build_object('graph_id', a.graph_id, 'assistant_id', a.assistant_id));
    v_kwargs := p_kwargs || jsonb_build_object(
        'config', v_config,
        'context', coalesce(a.context, '{}') || coalesce(p_context, '{}'));

    INSERT INTO runs (run_id, thread_id, assistant_id, metadata, kwargs, multitask_strategy,
                      available_at, status, attempt, fencing_token, lease_owner,
                      lease_expires_at, started_at, temporary, on_completion)
    VALUES (p_run_id, p_thread_id, a.assistant_id,
            coalesce(p_metadata, '{}') || jsonb_build_object('graph_id', a.graph_id,
                                                             'assistant_id', a.assistant_id),
            v_kwargs, p_strategy,
            now() + make_interval(secs => greatest(coalesce(p_after_seconds, 0), 0)),
            CASE WHEN v_start THEN 'running' ELSE 'pending' END,
            CASE WHEN v_start THEN 1 ELSE 0 END,
            CASE WHEN v_start THEN 1 ELSE 0 END,
            CASE WHEN v_start THEN p_owner END,
            CASE WHEN v_start THEN now() + make_interval(secs => p_lease_seconds) END,
            CASE WHEN v_start THEN now() END,
            p_temporary, p_on_completion)
    RETURNING * INTO v_row;

    UPDATE threads
       SET status = 'busy',
           updated_at = now(),
           metadata = metadata || jsonb_build_object('graph_id', a.graph_id,
                                                     'assistant_id', a.assistant_id)
     WHERE thread_id = p_thread_id;

    IF NOT v_start THEN
        PERFORM pg_notify('staffgraph_runs', '');
    END IF;

    RETURN QUERY SELECT 'created'::text, a.graph_id, to_jsonb(v_row),
                        CASE WHEN p_strategy IN ('interrupt', 'rollback') THEN v_running END,
                        CASE WHEN p_strategy IN ('interrupt', 'rollback') THEN v_pending END;
END;
$$;


-- Claim up to p_limit runnable runs for p_owner: pending, due, the oldest pending of a thread
-- that has nothing running. Threads locked by someone else are skipped, not waited for.
CREATE FUNCTION staffgraph_claim_runs(
    p_owner text,
    p_lease_seconds double precision,
    p_limit integer
) RETURNS SETOF runs LANGUAGE plpgsql AS $$
DECLARE
    cand record;
    v_run_id uuid;
    v_claimed integer := 0;
    v_row runs%ROWTYPE;
BEGIN
    FOR cand IN
        SELECT oldest.thread_id FROM (
            SELECT DISTINCT ON (r.thread_id) r.thread_id, r.created_at
              FROM runs r
             WHERE r.status = 'pending' AND r.available_at <= now()
             ORDER BY r.thread_id, r.created_at
        ) oldest
         ORDER BY oldest.created_at
         LIMIT 100
    LOOP
        EXIT WHEN v_claimed >= p_limit;
        PERFORM 1 FROM threads WHERE thread_id = cand.thread_id FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        CONTINUE WHEN EXISTS (SELECT 1 FROM runs
                               WHERE thread_id = cand.thread_id AND status = 'running');
        SELECT r.run_id INTO v_run_id FROM runs r
         WHERE r.thread_id = cand.thread_id AND r.status = 'pending'
         ORDER BY r.created_at LIMIT 1;
        CONTINUE WHEN v_run_id IS NULL;
        UPDATE runs
           SET status = 'running', lease_owner = p_owner,
               lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               attempt = attempt + 1, fencing_token = fencing_token + 1,
               started_at = coalesce(started_at, now()), updated_at = now()
         WHERE run_id = v_run_id AND status = 'pending' AND available_at <= now()
        RETURNING * INTO v_row;
        IF FOUND THEN
            v_claimed := v_claimed + 1;
            RETURN NEXT v_row;
        END IF;
    END LOOP;
END;
$$;


-- Record how a run ended, fenced by its token, and move the thread on in the same transaction:
-- status, values, interrupts, error; delete a temporary thread; and, when p_owner is given,
-- claim the thread's next queued run for p_owner so an enqueued run starts without a hop.
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
    p_lease_seconds double precision
) RETURNS TABLE (outcome text, thread_deleted boolean, next_run jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_found boolean;
    v_temporary boolean := false;
    v_on_completion text;
    v_queued boolean;
    v_next runs%ROWTYPE;
    v_next_json jsonb;
BEGIN
    PERFORM 1 FROM threads WHERE thread_id = p_thread_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_thread'::text, true, NULL::jsonb;
        RETURN;
    END IF;

    SELECT r.temporary, r.on_completion INTO v_temporary, v_on_completion
      FROM runs r WHERE r.run_id = p_run_id;
    v_found := FOUND;
    IF v_found THEN
        IF p_delete_run THEN
            DELETE FROM runs WHERE run_id = p_run_id AND fencing_token = p_token
                                AND status = 'running';
        ELSE
            UPDATE runs
               SET status = p_status, error = p_error, ended_at = now(), updated_at = now(),
                   lease_owner = NULL, lease_expires_at = NULL
             WHERE run_id = p_run_id AND fencing_token = p_token AND status = 'running';
        END IF;
        IF NOT FOUND THEN
            -- Another worker holds a newer lease: its result, not ours, counts.
            RETURN QUERY SELECT 'stale'::text, false, NULL::jsonb;
            RETURN;
        END IF;
    END IF;

    v_queued := EXISTS (SELECT 1 FROM runs
                         WHERE thread_id = p_thread_id AND status IN ('pending', 'running'));

    IF v_temporary AND v_on_completion = 'delete' AND NOT v_queued THEN
        DELETE FROM threads WHERE thread_id = p_thread_id;
        RETURN QUERY SELECT 'finished'::text, true, NULL::jsonb;
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

    RETURN QUERY SELECT 'finished'::text, false, v_next_json;
END;
$$;


-- Runs whose worker stopped renewing its lease: back to the queue, or failed for good after
-- p_max_attempts. Returns what happened to each so the caller can wake workers / end streams.
CREATE FUNCTION staffgraph_sweep_runs(p_max_attempts integer)
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
        IF lapsed.attempt >= p_max_attempts OR lapsed.cancel_action IS NOT NULL THEN
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
            RETURN QUERY SELECT lapsed.run_id, lapsed.thread_id, 'failed'::text;
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
