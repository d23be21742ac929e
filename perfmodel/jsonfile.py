"""Reading a JSON object from a user's file, with one-line errors naming the file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import PerfmodelError


def read_json_object(path, what: str, error: type[PerfmodelError] = PerfmodelError) -> dict:
    """The JSON object in ``path``; ``error`` (one line, naming the file and ``what`` it is) otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"cannot read {what} file {str(p)!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise error(f"{what} file {str(p)!r} is not UTF-8 text (byte {e.start}); JSON files must be UTF-8") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{p}: {what} file is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(d, dict):
        raise error(f"{p}: {what} file must hold a JSON object")
    return d


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temp file in the same folder and ``os.replace``:
    an interrupted write leaves the previous file as it was.  Missing folders are created; the
    file gets the usual permissions (mkstemp makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (path.stat().st_mode & 0o777) if path.exists() else 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
