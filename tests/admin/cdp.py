"""The admin tests' Chromium driver: :mod:`tools.chrome` (shared with the softphone test, ``make call-browser``)."""

from tools.chrome import Chrome

__all__ = ["Chrome"]
