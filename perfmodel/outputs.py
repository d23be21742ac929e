"""Checks on an output path, made before any work: never over an input, always writable.

``check_output(path, inputs)`` raises :class:`PerfmodelError` (one line, exit 2 in the CLI)
when the path is empty, is a folder, is the same file as one of ``inputs`` (compared by
resolved path, and by ``os.path.samefile`` where both exist), lies under a file, or lies in
a folder that cannot be created or written.  The write itself stays atomic (temp file in the
same folder + ``os.replace``), so an interrupted run leaves the previous file intact.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import PerfmodelError


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(path, inputs=(), what: str = "output") -> Path:
    """The output ``path`` as a Path, after the checks above."""
    if path is None or not str(path).strip():
        raise PerfmodelError(f"{what} path {str(path)!r} is empty; give a file name")
    p = Path(path)
    if p.is_dir():
        raise PerfmodelError(f"{what} path {str(p)!r} is a folder; give a file name")
    for i in inputs:
        if i is not None and str(i).strip() and _same(p, Path(i)):
            raise PerfmodelError(f"{what} path {str(p)!r} is also an input; write to another file")
    folder = p.parent if str(p.parent) else Path(".")
    anc = folder
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise PerfmodelError(f"{what} path {str(p)!r} is not allowed: {str(anc)!r} is a file, not a folder")
    if not folder.exists():
        # the writers create missing folders: the first existing ancestor must be writable
        if not os.access(anc, os.W_OK | os.X_OK):
            raise PerfmodelError(f"{what} folder {str(folder)!r} cannot be created ({str(anc)!r} is not writable)")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise PerfmodelError(f"{what} folder {str(folder)!r} is not writable")
    if p.exists() and not os.access(p, os.W_OK) and os.geteuid() != 0:
        raise PerfmodelError(f"{what} file {str(p)!r} is not writable")
    return p
