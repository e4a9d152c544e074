#!/usr/bin/env python
"""Django's command-line utility. Settings default to paymentflow.settings.base (the
environment-driven settings; `make run` sets DJANGO_DEBUG=1)."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paymentflow.settings.base")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
