"""Fuzzing the running gateway from its own OpenAPI schema (schemathesis).

Every operation in the RUNNING gateway's `/openapi.json` is called with a
bounded number of generated requests, valid ones (positive) and invalid ones
(negative), with a valid API key of an ordinary user, and every response is
checked: no 5xx, a status code the schema declares, the declared content type,
headers and body schema.

Decisions:

- Bounded and repeatable: `EXAMPLES` per operation and mode (a few hundred
  per operation: issue 17 asked for that much in CI), derandomized (the same
  cases each run, so a failure reproduces), no shrinking, no example
  database; the whole run takes a minute or two.
- An ordinary user's key, with limits high enough that the fuzzer does not
  spend its examples on 429s: admin operations are exercised too and answer
  403, so the fuzzer can never turn the kill switch on or revoke keys of the
  shared stack.
- Generated values of the headers that frame the HTTP message
  (`Transfer-Encoding`, `Content-Length`, ...) are not sent: the HTTP
  parser refuses those requests before the API sees them.
- `/v1/chat/stream` is included: a valid chat streams its run to `done`
  (modelsim answers in a fraction of a second) and the SSE body is checked
  against its declared `text/event-stream` content.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from relay_devstack.harness import api

EXAMPLES = 150  # per operation and generation mode: 300 per operation
TIME_BOUND_S = 300.0
# Headers that frame the HTTP message itself (RFC 9112). A generated value
# there (an empty `Transfer-Encoding`, say) makes the request one the HTTP
# parser refuses: uvicorn answers 400 "Invalid HTTP request received." before
# the API sees it. That is the transport's behaviour, not the API's contract,
# so such cases are not sent (a fresh-clone CI run drew one).
FRAMING_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "host"})
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def make_key(stack: Any, **limits: int) -> str:
    body = {"user_id": f"fuzz-{uuid.uuid4().hex[:10]}", "name": "schemathesis", **limits}
    with api(stack, stack.admin_key) as admin:
        resp = admin.post("/v1/admin/keys", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["api_key"])


def _fuzz(
    operation: Any, mode: GenerationMode, examples: int, base_url: str, headers: dict[str, str]
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        assume(not FRAMING_HEADERS & {name.lower() for name in case.headers or {}})
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    run()


def fuzz_all(
    stack: Any, key: str, *, examples: int, modes: tuple[GenerationMode, ...]
) -> tuple[list[str], list[str]]:
    """Fuzz every operation of the running gateway; returns (labels, failures)."""
    schema = schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json", timeout=10)
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    labels: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the schema of this operation cannot be used
            failures.append(f"invalid schema: {result.err()}")
            continue
        operation = result.ok()
        labels.append(operation.label)
        for mode in modes:
            try:
                _fuzz(operation, mode, examples, stack.gateway_url, headers)
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to send.
                if mode is not GenerationMode.NEGATIVE:
                    raise
            except Exception as exc:  # collect every operation's failure, then report all
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    return labels, failures


def test_the_gateway_conforms_to_its_schema_under_fuzzing(stack: Any) -> None:
    # Limits high enough that the examples are not spent on 429s.
    key = make_key(stack, rate_limit_per_min=1_000_000, max_concurrent_runs=100_000)
    started = time.monotonic()
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    labels, failures = fuzz_all(stack, key, examples=EXAMPLES, modes=modes)
    took = time.monotonic() - started
    assert "POST /v1/runs" in labels and "POST /v1/chat/stream" in labels, labels
    assert not failures, "\n\n".join(failures)
    assert took < TIME_BOUND_S, f"fuzzing took {took:.0f} s"


def test_refusals_over_a_limit_conform_too(stack: Any) -> None:
    """A key over its rate limit: the 429s (and their `Retry-After`) match the schema."""
    key = make_key(stack, rate_limit_per_min=5, max_concurrent_runs=1)
    before = _rate_limited(stack)
    labels, failures = fuzz_all(stack, key, examples=5, modes=(GenerationMode.POSITIVE,))
    assert labels and not failures, "\n\n".join(failures)
    assert _rate_limited(stack) - before >= 10  # the 429s were really exercised


def _rate_limited(stack: Any) -> float:
    with httpx.Client(base_url=stack.management_url("gateway")) as client:
        text = client.get("/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith("relay_gateway_rate_limited_total"))
    return float(line.split()[-1])
