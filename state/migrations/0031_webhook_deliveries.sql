-- Webhook deliveries: one row per run that ended with a `webhook` in its kwargs.
--
-- The row is queued by a trigger in the very transaction that records how the run ended, so a
-- process that dies right after a run finished cannot lose its webhook, whichever code path
-- ended the run (the executor, a cancel, the lease sweeper). It is deferred to the commit so it
-- reads the thread's values as that transaction left them: the run's final state, or NULL when
-- the thread was deleted with the run (a stateless run with on_completion=delete), which is
-- what the reference server posts for those runs.
--
-- Any server or worker process delivers: it claims due rows with FOR UPDATE SKIP LOCKED under a
-- lease (a sender that dies mid-call is retried once the lease lapses), POSTs, and records the
-- outcome. Rows outlive their run and thread, so a delivery stays visible after a stateless
-- run's thread is gone.

CREATE TABLE webhook_deliveries (
    run_id           uuid PRIMARY KEY,
    thread_id        uuid NOT NULL,
    url              text NOT NULL,
    run              jsonb NOT NULL,
    "values"         jsonb,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_thread ON webhook_deliveries (thread_id);

CREATE FUNCTION staffgraph_queue_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (run_id, thread_id, url, run, "values")
    VALUES (NEW.run_id, NEW.thread_id, NEW.kwargs ->> 'webhook', to_jsonb(NEW),
            (SELECT t."values" FROM threads t WHERE t.thread_id = NEW.thread_id))
    ON CONFLICT (run_id) DO NOTHING;
    PERFORM pg_notify('staffgraph_webhooks', '');
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER runs_queue_webhook
    AFTER UPDATE OF status ON runs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'running')
          AND NEW.status IN ('success', 'error', 'interrupted', 'timeout')
          AND (NEW.kwargs ->> 'webhook') IS NOT NULL)
    EXECUTE FUNCTION staffgraph_queue_webhook();
