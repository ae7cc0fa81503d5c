-- The effect ledger: what each side-effecting tool call returned, so that a task executed again
-- (after a crash, a requeue or a lease takeover) gets the recorded result instead of acting
-- twice. A row is inserted (the claim) and given its result in ONE transaction: a committed row
-- always has its result, and a second execution of the same call waits on the first's claim.
CREATE TABLE tool_effects (
    thread_id     uuid NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    checkpoint_ns text NOT NULL,
    task_id       text NOT NULL,
    tool_call_id  text NOT NULL,
    tool_name     text NOT NULL,
    run_id        uuid,
    result        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, checkpoint_ns, task_id, tool_call_id)
);

-- Calls that were started, committed before the tool is called (outside the claim's
-- transaction): a call found here without a result in tool_effects crashed mid-call, and only
-- a tool that declares itself idempotent is called again.
CREATE TABLE tool_effect_attempts (
    thread_id     uuid NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    checkpoint_ns text NOT NULL,
    task_id       text NOT NULL,
    tool_call_id  text NOT NULL,
    attempts      integer NOT NULL DEFAULT 1,
    started_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, checkpoint_ns, task_id, tool_call_id)
);
