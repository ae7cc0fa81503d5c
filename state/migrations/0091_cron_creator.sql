-- Who a cron's runs run as: the identity of the caller that created it (user, permissions and
-- the built-in API key it came with; server.auth.identity.Caller.stored). Each firing asks the
-- auth policy again (server/runtime/cron_creator.py): a revoked key disables the cron.
-- user_id (0030) now holds the creator's user id.
ALTER TABLE crons ADD COLUMN auth jsonb;
