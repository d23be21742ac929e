"""Reading a JSON object from a user's file, with one-line errors naming the file."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import PerfmodelError


def read_json_object(path, what: str, error: type[PerfmodelError] = PerfmodelError) -> dict:
    """The JSON object in ``path``; ``error`` (one line, naming the file and ``what`` it is) otherwise."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise error(f"cannot read {what} file {str(p)!r}: {e.strerror}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{p}: {what} file is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(d, dict):
        raise error(f"{p}: {what} file must hold a JSON object")
    return d
