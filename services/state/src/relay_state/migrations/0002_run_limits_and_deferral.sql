-- Guardrails on the run itself (issue 5).
--
-- daily_limit_usd: the user's daily spend ceiling in force when the run was
-- submitted (the API key's, else the gateway's default), so a runner enforces
-- it from the claimed run without a key lookup. The run's own ceiling is the
-- existing max_cost_usd.
--
-- deferred: a `queued` run held back behind the active run of its
-- conversation (`"on_conflict": "enqueue"`). It is not on any Redis queue
-- until the active run ends; finishing or cancelling that run clears the flag
-- of the oldest deferred run of the conversation in the same transaction, and
-- the reconciler never enqueues a run while it is deferred.

ALTER TABLE runs ADD COLUMN IF NOT EXISTS daily_limit_usd numeric;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS deferred boolean NOT NULL DEFAULT false;

-- The hand-off: a conversation's deferred runs, oldest first.
CREATE INDEX IF NOT EXISTS runs_deferred_idx ON runs (conversation_id, seq)
    WHERE deferred AND status = 'queued';
