-- Creating a run and checking the caller's runs at once in one statement: the check of 0141,
-- then staffgraph_create_run, in the statement's own transaction. A caller at the limit gets
-- SQLSTATE SGR29 and no run. Same arguments as staffgraph_create_run, then the caller and the
-- limit.

CREATE FUNCTION staffgraph_create_run_limited(
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
    p_lease_seconds double precision,
    p_thread_filter jsonb,
    p_user text,
    p_max_runs integer
) RETURNS TABLE (
    outcome text,
    graph_id text,
    run jsonb,
    cancel_ids uuid[],
    settled_ids uuid[]
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM staffgraph_check_run_limit(p_user, p_max_runs);
    RETURN QUERY SELECT * FROM staffgraph_create_run(
        p_run_id, p_thread_id, p_assistant_id, p_metadata, p_kwargs, p_config, p_context,
        p_strategy, p_if_not_exists, p_temporary, p_on_completion, p_after_seconds, p_owner,
        p_lease_seconds, p_thread_filter);
END;
$$;
