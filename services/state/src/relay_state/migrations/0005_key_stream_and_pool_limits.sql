-- Limits an API key may carry against hostile clients and noisy neighbours (issue 17).
--
-- max_streams: event streams the key may hold open at once, across every
-- events replica (NULL: the events service's RELAY_MAX_STREAMS_PER_KEY).
--
-- interactive_share: the share of the interactive pool's slots the key's user
-- may hold at once (NULL: the gateway's RELAY_INTERACTIVE_TENANT_SHARE, half
-- the pool). An operator gives a tenant more with PATCH /v1/admin/keys/{id}.

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS max_streams integer
    CHECK (max_streams IS NULL OR max_streams > 0);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS interactive_share double precision
    CHECK (interactive_share IS NULL OR (interactive_share > 0 AND interactive_share <= 1));
