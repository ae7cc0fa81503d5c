-- Crons: a run payload fired on a schedule, on one thread (thread_id set) or each time on a new
-- thread (stateless). Deleting the thread or the assistant deletes its crons, as the reference
-- server does.
--
-- The scheduler of every server and worker process claims due crons with
-- SELECT ... FOR UPDATE SKIP LOCKED and, in the same transaction, creates the run and moves
-- next_run_date past now(): a tick fires once whatever the number of processes, and a tick is
-- either fired and moved on, or neither (see server/runtime/cron.py).

CREATE TABLE crons (
    cron_id          uuid PRIMARY KEY,
    assistant_id     uuid NOT NULL REFERENCES assistants (assistant_id) ON DELETE CASCADE,
    thread_id        uuid REFERENCES threads (thread_id) ON DELETE CASCADE,
    user_id          text NOT NULL DEFAULT '',
    schedule         text NOT NULL,
    timezone         text,
    end_time         timestamptz,
    enabled          boolean NOT NULL DEFAULT true,
    on_run_completed text CHECK (on_run_completed IN ('delete', 'keep')),
    payload          jsonb NOT NULL,
    metadata         jsonb NOT NULL DEFAULT '{}',
    next_run_date    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The scheduler's question: which enabled crons are due?
CREATE INDEX crons_due ON crons (next_run_date) WHERE enabled;
CREATE INDEX crons_thread ON crons (thread_id) WHERE thread_id IS NOT NULL;
CREATE INDEX crons_assistant ON crons (assistant_id);
CREATE INDEX crons_created_at ON crons (created_at);
CREATE INDEX crons_metadata ON crons USING gin (metadata jsonb_path_ops);
