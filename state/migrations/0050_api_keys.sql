-- Built-in API keys (STAFFGRAPH_AUTH=keys). Only a SHA-256 hash of each key is stored: the key
-- itself is shown once, when `staffgraph keys create` makes it. key_id is the public part of
-- the key (it is also in the key text) and names it in `keys list` / `keys revoke`.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      text PRIMARY KEY,
    key_hash    text NOT NULL,
    user_id     text NOT NULL,
    role        text NOT NULL CHECK (role IN ('viewer', 'member', 'approver', 'admin')),
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX IF NOT EXISTS api_keys_user_idx ON api_keys (user_id);
