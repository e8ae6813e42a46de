-- The admin overview's "spend today" sums every user's ledger rows of one
-- day (relay_state.spend.DAILY_TOTAL); the (user_id, day) index cannot serve it.
CREATE INDEX IF NOT EXISTS cost_ledger_day_idx ON cost_ledger (day);
