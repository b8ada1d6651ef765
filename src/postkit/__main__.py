"""``python -m postkit``: the same command as the ``postkit`` console script."""

from postkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
