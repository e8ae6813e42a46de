-- One trace per run (issue 13).
--
-- traceparent: the W3C trace context the run was created in (state's span of
-- the submit request, a child of the gateway's). Every attempt's `run` span
-- starts under it, so a run resumed by another runner, or re-enqueued by the
-- reconciler after Redis lost its queue entry, stays in the trace its submit
-- began. NULL when tracing was off at submit. The queue entry carries a copy
-- (its `traceparent` field); this row is what survives a Redis loss.

ALTER TABLE runs ADD COLUMN IF NOT EXISTS traceparent text;

-- attempt_traceparent: the trace context of the last claim (a span inside that
-- attempt's `run` span). The next claim answers it as `previous_traceparent`,
-- and the runner's `resumed` span links to it: the attempts of a run resumed
-- after a crash are linked, not only in one trace.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS attempt_traceparent text;
