-- Runs one caller has in flight, counted when a run is created (STAFFGRAPH_MAX_CONCURRENT_RUNS):
-- a partial index over in-flight runs by the identity the server stamped on them.
CREATE INDEX runs_user_inflight
    ON runs ((kwargs -> 'config' -> 'configurable' ->> 'langgraph_auth_user_id'))
    WHERE status IN ('pending', 'running');
