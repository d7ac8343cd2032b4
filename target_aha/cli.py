"""The `target-aha` executable: `--version` answered at once, everything else by the SDK's CLI.

Importing singer-sdk is most of a start-up (about 0.35 s of the 0.4 s `--version` took), and
`--version` (which Meltano and people run often) needs none of it: it is printed as the SDK's
`print_version` prints it, from the installed packages' metadata (0.05 s).
"""

from __future__ import annotations

import sys
from importlib.metadata import version


def main() -> None:
    """Run target-aha as its command line says."""
    if sys.argv[1:] == ["--version"]:
        print(f"target-aha v{version('target-aha')}, Meltano SDK v{version('singer-sdk')}")
        return
    from target_aha.target import TargetAha  # noqa: PLC0415 - the SDK only when needed

    TargetAha.cli()
