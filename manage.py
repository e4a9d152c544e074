#!/usr/bin/env python
"""Django's command-line utility. Settings default to paymentflow.settings.base (the
environment-driven settings).

With nothing configured (no DJANGO_SECRET_KEY, and the embedded SQLite database) it runs like
`make run`: debug on, with the dev-only key. A deployment that names its database but not
its key still fails loudly, and production settings (gunicorn) always need the key.
"""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paymentflow.settings.base")
    database_url = os.environ.get("DATABASE_URL", "").strip()
    embedded_database = not database_url or database_url.startswith("sqlite:")
    if not os.environ.get("DJANGO_SECRET_KEY", "").strip() and embedded_database:
        os.environ.setdefault("DJANGO_DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
