"""`python -m target_aha.sandbox`: run the sandbox as its own process until SIGTERM or SIGINT.

It prints one line once it is serving, so a script or test can wait for it and read the URL:
`target-aha sandbox listening on http://127.0.0.1:PORT/sandbox-<random>/api/v1 (token:
sandbox-token)`; the `sandbox-<random>` segment is new on every start (see `Sandbox`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .app import Sandbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m target_aha.sandbox",
        description="A local Aha!-compatible API server (in memory) for trying target-aha.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--token", default="sandbox-token", help="the API key clients must send")
    parser.add_argument("--rate-per-second", type=int, default=None, help="Aha! allows 20")
    parser.add_argument("--rate-per-minute", type=int, default=None, help="Aha! allows 300")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction of connections cut")
    parser.add_argument(
        "--commit-timeout-rate", type=float, default=0.0,
        help="fraction written but never answered",
    )
    parser.add_argument(
        "--relax-goal-validation", action="store_true",
        help="accept goals with only a name (Aha! also requires a success metric and status)",
    )
    parser.add_argument("--seed", type=int, default=0, help="for reproducible faults and ids")
    parser.add_argument("--port-file", type=Path, help="also write the base URL to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; exit 0 after a clean stop."""
    args = _parser().parse_args(argv)
    sandbox = Sandbox(
        token=args.token, host=args.host, port=args.port,
        rate_per_second=args.rate_per_second, rate_per_minute=args.rate_per_minute,
        seed=args.seed,
    )
    try:
        sandbox.configure(
            latency_ms=args.latency_ms, error_rate=args.error_rate, drop_rate=args.drop_rate,
            commit_timeout_rate=args.commit_timeout_rate,
            relax_goal_validation=args.relax_goal_validation,
        )
    except ValueError as problem:
        _parser().error(str(problem))
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sandbox.start()
    try:
        if args.port_file is not None:
            # Write then rename, so a reader polling for the file never sees half a URL.
            partial = args.port_file.with_name(args.port_file.name + f".{os.getpid()}.tmp")
            partial.write_text(sandbox.base_url + "\n")
            partial.replace(args.port_file)
        print(
            f"target-aha sandbox listening on {sandbox.base_url} (token: {sandbox.token})",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
