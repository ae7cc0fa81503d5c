-- staffgraph: outside transaction
-- A thread's runs by their end: what a thread stream asks for after each run it follows and on
-- each idle tick (server/repos/run_ends.py: the runs in flight, or ended since it last asked).
-- Without it the question reads every run the thread ever had; with it, only the entries of
-- the runs that ended since. Partial: a run gets its entry once, when it ends, and none while
-- queued or running.
--
-- Built concurrently (state/schema.py): on an upgrade the runs table is in use, and a plain
-- CREATE INDEX would hold off every run's creation and end until it is built.
CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_thread_ended
    ON runs (thread_id, ended_at) WHERE ended_at IS NOT NULL;
