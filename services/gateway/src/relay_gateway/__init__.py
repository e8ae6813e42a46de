"""relay-gateway: Relay's public API (DESIGN, "Public API").

It authenticates API keys, validates and limits requests, applies the kill
switch, submits runs, serves the interactive stream, and relays everything
else to state's internal API. It never touches Postgres (state owns SQL) and
uses Redis for the kill switch, the rate limit, run admission (per-user and
interactive slots), key revocations and the event fan-out.

Modules: `config` (settings), `app` (the FastAPI app), `runtime` (clients made
in the lifespan), `deps` (dependency aliases: auth, rate limit, admin),
`routes/` (one module per resource), `service` (runs, conversations),
`stream` (POST /v1/chat/stream), `admin_service`, `health_service`,
`admission` (the slots a new run takes before it exists), `admit_script`
(its Redis round trips: kill switch and slots), `active_runs` (per-user
concurrent runs), `capacity` (interactive runner slots), `runids` (run ids minted here),
`killswitch`, `ratelimit`, `limits` (body size and type), `cancels`,
`upstream` (state failures to public errors), `metrics`, `schemas` (the public models), `sse_schema`
(the events' OpenAPI description).
"""
