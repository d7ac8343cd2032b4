"""The README's settings table is exactly what `target-aha --about --format=markdown` prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXECUTABLE

README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- settings:start", "<!-- settings:end -->"


def about_settings_table() -> str:
    """The settings table of `--about --format=markdown`."""
    about = subprocess.run([EXECUTABLE, "--about", "--format=markdown"], capture_output=True,
                           text=True, check=True).stdout
    table = re.search(r"^\| Setting .*?(?=\n\n|\Z)", about, flags=re.M | re.S)
    assert table, about
    return table.group(0).strip()


def readme_settings_table(text: str) -> str:
    block = text.split(START, 1)[1].split("\n", 1)[1].split(END, 1)[0]
    return block.strip()


def test_readme_settings_table_matches_about() -> None:
    assert readme_settings_table(README.read_text()) == about_settings_table(), (
        "README settings table is stale: run `python -m tests.test_docs` to regenerate it"
    )


if __name__ == "__main__":
    text = README.read_text()
    head, rest = text.split(START, 1)
    marker_line, rest = rest.split("\n", 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}{marker_line}\n{about_settings_table()}\n{END}{tail}")
    sys.exit(0)
