"""A local Aha!-compatible API server for the demo, the tests and the benchmarks.

Start one in-process with `Sandbox` (see `Sandbox.configure` for the faults), or as its own
process with `python -m target_aha.sandbox --help`, and drive it over HTTP under /__sandbox/
(no auth, no rate limit, no faults, not logged; also under the site's `sandbox-<random>`
segment, new on every start, under which the API lives: `{site}/api/v1`):

    GET    /__sandbox/requests               the request log (a JSON list)
    DELETE /__sandbox/requests               clear it (204)
    GET    /__sandbox/config                 current settings
    POST   /__sandbox/config                 {"latency_ms": 50, ...}: configure(); 400 if bad
    GET    /__sandbox/objects/{kind}         stored objects (a JSON list); 404 for a bad kind
    DELETE /__sandbox/objects/{kind}/{id}    delete behind the API's back (204, or 404)
    GET    /__sandbox/stats                  counters and busiest windows
    POST   /__sandbox/reset                  back to the seed data (204)

Beyond Aha!'s routes: every update route also takes PATCH (as Rails routes do), and
`/api/v1/echo/<anything>` takes any method and body and answers 200
`{"echo": {"method", "path", "query", "body"}}` (FAIL-400 / FAIL-422 anywhere in the body
answers 400 / 422), for custom endpoints and batch bodies that Aha! itself has no route for.

Rate-limit headers: `X-Ratelimit-*` are sent only while a limit is configured, for the most
constraining window (fewest remaining, then latest reset). With no limit they are omitted, so
a client never slows down for a budget nobody enforces; an injected throttle 429 still sends
them (Limit 300 then, Remaining 0, Reset now + 1).
"""

from .app import Sandbox

__all__ = ["Sandbox"]
