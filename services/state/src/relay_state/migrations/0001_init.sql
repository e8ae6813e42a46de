-- Relay's schema (DESIGN "Postgres"). Applied once by `relay-state migrate`
-- inside a transaction and recorded in schema_migrations; IF NOT EXISTS keeps
-- a hand-run re-application harmless too.

CREATE TABLE IF NOT EXISTS api_keys (
    id                  text PRIMARY KEY,
    user_id             text NOT NULL,
    role                text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    name                text NOT NULL DEFAULT '',
    -- sha256 hex of the key. Keys are 256 bits from secrets.token_urlsafe, so
    -- guessing one from its hash is infeasible whatever the hash speed; a slow
    -- password hash (bcrypt, argon2) protects low-entropy secrets and would
    -- only add latency to every verification. A deterministic hash also lets
    -- verification be one indexed lookup instead of a scan.
    key_hash            text NOT NULL UNIQUE,
    prefix              text NOT NULL,
    run_limit_usd       numeric,
    daily_limit_usd     numeric,
    rate_limit_per_min  integer,
    max_concurrent_runs integer,
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_user_idx ON api_keys (user_id, created_at);

CREATE TABLE IF NOT EXISTS conversations (
    id          text PRIMARY KEY,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS conversations_user_idx ON conversations (user_id, updated_at DESC);

CREATE TABLE IF NOT EXISTS runs (
    id                  text PRIMARY KEY,
    seq                 bigserial NOT NULL UNIQUE,  -- creation order: pagination, history
    user_id             text NOT NULL,
    conversation_id     text NOT NULL REFERENCES conversations (id),
    kind                text NOT NULL CHECK (kind IN ('background', 'interactive')),
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    model               text NOT NULL,
    max_cost_usd        numeric,
    input               jsonb NOT NULL,
    idempotency_key     text,
    request_hash        text,
    attempts            integer NOT NULL DEFAULT 0,  -- the fencing token of the last claim
    cost_usd            numeric NOT NULL DEFAULT 0,
    error               jsonb,
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    heartbeat_at        timestamptz,
    UNIQUE (user_id, idempotency_key)
);
-- GET /runs: a user's runs newest first.
CREATE INDEX IF NOT EXISTS runs_user_seq_idx ON runs (user_id, seq DESC);
-- The reconciler: runs in flight, in seq order.
CREATE INDEX IF NOT EXISTS runs_inflight_idx ON runs (seq) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS runs_conversation_idx ON runs (conversation_id, seq);

CREATE TABLE IF NOT EXISTS messages (
    id               bigserial PRIMARY KEY,
    conversation_id  text NOT NULL REFERENCES conversations (id),
    run_id           text NOT NULL REFERENCES runs (id),
    run_seq          bigint NOT NULL,  -- runs.seq, copied so history sorts without a join
    idx              integer NOT NULL, -- position inside the run: 0 is the user message
    role             text NOT NULL CHECK (role IN ('user', 'assistant')),
    content          jsonb NOT NULL,   -- Anthropic blocks: text, tool_use, tool_result
    token_count      integer NOT NULL DEFAULT 0,
    cost_usd         numeric NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, idx)
);
-- History of a conversation, in (run_seq, idx) order.
CREATE INDEX IF NOT EXISTS messages_conversation_idx ON messages (conversation_id, run_seq, idx);

CREATE TABLE IF NOT EXISTS run_checkpoints (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL REFERENCES runs (id),
    attempt     integer NOT NULL,
    step        integer NOT NULL,
    kind        text NOT NULL,
    call_index  integer NOT NULL DEFAULT 0,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Also the index of "this run's checkpoints in (step, kind, call_index) order".
    UNIQUE (run_id, step, kind, call_index)
);

CREATE TABLE IF NOT EXISTS cost_ledger (
    id             bigserial PRIMARY KEY,
    user_id        text NOT NULL,
    run_id         text NOT NULL UNIQUE REFERENCES runs (id),  -- one row per finished run
    model          text NOT NULL,
    input_tokens   integer NOT NULL DEFAULT 0,
    output_tokens  integer NOT NULL DEFAULT 0,
    cost_usd       numeric NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    day            date NOT NULL DEFAULT ((now() AT TIME ZONE 'UTC')::date)
);
CREATE INDEX IF NOT EXISTS cost_ledger_user_day_idx ON cost_ledger (user_id, day);

CREATE TABLE IF NOT EXISTS documents (
    id          text PRIMARY KEY,
    user_id     text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    tsv         tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', title), 'A')
                    || setweight(to_tsvector('english', body), 'B')
                ) STORED
);
CREATE INDEX IF NOT EXISTS documents_tsv_idx ON documents USING gin (tsv);
CREATE INDEX IF NOT EXISTS documents_user_idx ON documents (user_id);
