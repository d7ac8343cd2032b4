"""A local Aha!-compatible API server for the demo, the tests and the benchmarks.

Start one in-process with `Sandbox` (see its methods for inspection and fault injection), or
as a separate process with `python -m target_aha.sandbox` and drive it over HTTP under
`/__sandbox/`.
"""

from .app import Sandbox

__all__ = ["Sandbox"]
