"""The ``postkit`` command (to be completed by the CLI work)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("postkit: the command line is not built yet")
