-- Thread TTLs (``ttl`` on thread create/update, or langgraph.json checkpointer.ttl.default_ttl):
-- when a thread's expires_at (and its index, both from 0001) passes, the TTL sweeper deletes it
-- (strategy 'delete') or prunes it to its latest checkpoint (strategy 'keep_latest').

ALTER TABLE threads
    ADD COLUMN ttl_strategy text CHECK (ttl_strategy IN ('delete', 'keep_latest')),
    ADD COLUMN ttl_minutes double precision;
