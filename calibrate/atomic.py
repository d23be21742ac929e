"""Atomic JSON writes for calibrated profiles (:func:`perfmodel.jsonfile.write_json_atomic`).

An interrupted calibration (Ctrl-C, a crash, a full disk) never leaves a half-written profile:
the previous file stays intact until the rename, which POSIX and Windows perform atomically
within one directory.
"""
from __future__ import annotations

import os  # noqa: F401  (tests patch perfmodel.calibrate.atomic.os.replace)

from ..jsonfile import write_json_atomic

__all__ = ["write_json_atomic"]
