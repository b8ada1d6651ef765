"""A prestart step that applies postkit's migrations before the web workers start.

    python migrations_prestart.py      # same effect as: postkit db upgrade

It reads the database URL exactly as the app does (``POSTKIT_DATABASE_URL``, then ``.env``).
"""

from __future__ import annotations

import logging

from postkit import PostKitSettings
from postkit.migrations import upgrade


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = PostKitSettings()
    upgrade(settings.database_url)  # a no-op when the database is already at head


if __name__ == "__main__":
    main()
