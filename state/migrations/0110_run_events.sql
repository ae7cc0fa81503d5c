-- Run event logs in Postgres, for a server of several processes without Redis (PostgresBroker).
--
-- One row per event of a run's log (stream 'run:<run id>') or per run announced on a thread
-- (stream 'thread:<thread id>'). Ids are '<ms>-<seq>' as with Redis Streams, strictly rising
-- within a stream: they are assigned here, under a per-stream transaction lock, so writers in
-- different processes (the worker, a sweeper, a cancel) cannot collide. Each append notifies
-- 'staffgraph_events' with the stream name; readers in every process wake on it and read the
-- rows after their cursor (and read again every few seconds, should a notification be lost).
--
-- UNLOGGED: the logs are transient, like a Redis without persistence. A Postgres crash empties
-- the table; a run's outcome is in `runs` and followers fall back to it when its log is gone.
-- Rows expire (a day while running; the replay TTL once the done marker is in) and every
-- process deletes expired rows now and then.

CREATE UNLOGGED TABLE run_events (
    stream     text NOT NULL,
    ms         bigint NOT NULL,
    seq        integer NOT NULL,
    event      text NOT NULL,
    data       bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (stream, ms, seq)
);

CREATE INDEX run_events_expiry ON run_events (expires_at);

CREATE FUNCTION staffgraph_append_event(
    p_stream text,
    p_event text,
    p_data bytea,
    p_ttl_seconds double precision,
    p_done boolean
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_last_ms  bigint;
    v_last_seq integer;
    v_ms       bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    v_seq      integer := 0;
    v_expires  timestamptz := now() + make_interval(secs => p_ttl_seconds);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('staffgraph_events:' || p_stream, 0));
    SELECT ms, seq INTO v_last_ms, v_last_seq
      FROM run_events WHERE stream = p_stream
     ORDER BY ms DESC, seq DESC LIMIT 1;
    IF v_last_ms IS NOT NULL AND v_ms <= v_last_ms THEN
        v_ms := v_last_ms;
        v_seq := v_last_seq + 1;
    END IF;
    INSERT INTO run_events (stream, ms, seq, event, data, expires_at)
    VALUES (p_stream, v_ms, v_seq, p_event, p_data, v_expires);
    IF p_done THEN
        -- The whole log now lives as long as the replay TTL.
        UPDATE run_events SET expires_at = v_expires
         WHERE stream = p_stream AND expires_at <> v_expires;
    END IF;
    PERFORM pg_notify('staffgraph_events', p_stream);
    RETURN v_ms || '-' || v_seq;
END;
$$;
