"""beaver's additions to schemathesis (loaded through SCHEMATHESIS_HOOKS by run).

- A serializer for `application/x-ndjson`, the enqueue route's second body
  type (the document gives it as a string of lines), so it is tested too.
- `error_body_matches_status`: every 4xx/5xx answer, documented or not
  (unknown paths, methods), is `{"error": {...}}` with the kind its status
  stands for (the README's error table).
- `refused_write_changed_nothing`: while BEAVER_ST_FROZEN is set (a phase
  that sends only invalid requests to a server with no work of its own),
  a refused request must leave the server's durable state as it was: the
  WAL's last LSN, the job counts and the totals are read after every
  refused request and compared with what they were when the phase began.
"""

import json
import os

import requests
import schemathesis
from hypothesis.internal import lambda_sources

# hypothesis names each filter's lambda by parsing its module's source with
# `ast.parse`; CPython 3.11's parser can fail there with "SystemError: AST
# constructor recursion depth mismatch" (a CPython bug, seen here on
# schemathesis's 200 KB coverage module), which aborts the whole operation.
# The name is only a label in reprs, so a failure falls back to hypothesis's
# own placeholder instead.
_describe_lambda = lambda_sources._lambda_description


def _lambda_description_or_placeholder(f):
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _lambda_description_or_placeholder

KINDS = {
    400: {"invalid"},
    401: {"unauthorized"},
    404: {"not_found"},
    405: {"method_not_allowed"},
    408: {"timeout"},
    409: {"conflict", "lease_lost"},
    413: {"too_large"},
    503: {"busy", "storage", "stopping"},
}


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    # A schema-violating (negative) body: one JSON value per line.
    items = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(v) for v in items).encode()


@schemathesis.check
def error_body_matches_status(ctx, response, case):
    status = response.status_code
    if status < 400:
        return None
    assert status in KINDS, f"status {status} is not one the API documents"
    try:
        doc = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"the {status} answer is not JSON: {response.content[:200]!r}")
    error = doc.get("error") if isinstance(doc, dict) else None
    assert isinstance(error, dict), f"the {status} answer has no `error` object: {doc}"
    kind = error.get("kind")
    assert kind in KINDS[status], f"status {status} with kind {kind!r}; expected {sorted(KINDS[status])}"
    assert isinstance(error.get("message"), str) and error["message"], "the error has no message"
    return None


def durable_state():
    url = os.environ["BEAVER_ST_URL"]
    token = os.environ["BEAVER_ST_TOKEN"]
    r = requests.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    s = r.json()
    return {"last_lsn": s["wal"]["last_lsn"], "jobs": s["jobs"], "totals": s["totals"],
            "snapshot_lsn": s["snapshot"]["lsn"]}


BEFORE = {}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if os.environ.get("BEAVER_ST_FROZEN"):
        BEFORE["state"] = durable_state()


@schemathesis.check
def refused_write_changed_nothing(ctx, response, case):
    if not os.environ.get("BEAVER_ST_FROZEN") or response.status_code < 400:
        return None
    before = BEFORE.get("state")
    now = durable_state()
    assert now == before, f"a refused {case.method} {case.path} changed the state: {before} -> {now}"
    return None
