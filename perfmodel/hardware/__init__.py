"""Shipped and user hardware profiles, by name or path."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ProfileError
from .profile import HardwareProfile, load_profile_file, profile_from_dict

#: ``profiles/`` at the repository root (editable install) or the packaged copy.
PROFILES_DIR = next((p for p in (Path(__file__).resolve().parents[2] / "profiles",
                                 Path(__file__).resolve().parents[1] / "profiles") if p.is_dir()),
                    Path(__file__).resolve().parents[2] / "profiles")
DEFAULT_GPU = "H100-SXM5"
DEFAULT_CPU = "cpu-generic"
#: where ``perfmodel calibrate`` writes by default: local-cpu.json, local-gpu.json
LOCAL_CPU, LOCAL_GPU = "local-cpu", "local-gpu"


def user_profiles_dir() -> Path:
    """``$PERFMODEL_HOME/profiles`` (default ``~/.perfmodel/profiles``): calibrated profiles."""
    return Path(os.environ.get("PERFMODEL_HOME", Path.home() / ".perfmodel")) / "profiles"


def _search_dirs() -> list[Path]:
    return [PROFILES_DIR, user_profiles_dir()]


def _by_name() -> dict[str, Path]:
    out = {}
    for d in _search_dirs():
        for p in sorted(d.glob("*.json")):
            out.setdefault(p.stem, p)
    return out


def available() -> list[str]:
    return sorted(_by_name())


def local_cpu_profile() -> str:
    """The calibrated CPU profile if ``perfmodel calibrate --cpu`` has run, else the generic one."""
    return LOCAL_CPU if LOCAL_CPU in _by_name() else DEFAULT_CPU


def resolve_name(name: str) -> str:
    """The profile name ``name`` means: exact or case-insensitive match, else a unique prefix
    (``h100`` -> ``H100-SXM5``); otherwise a one-line error with the closest names."""
    names = available()
    by_lower = {n.lower(): n for n in names}
    key = str(name).strip().lower()
    if key in by_lower:
        return by_lower[key]
    starts = [n for n in names if n.lower().startswith(key)] if key else []
    if len(starts) == 1:
        return starts[0]
    if len(starts) > 1:
        raise ProfileError(f"hardware {name!r} is ambiguous: it starts {', '.join(starts)}; give more of the name")
    import difflib
    close = difflib.get_close_matches(key, list(by_lower), n=1, cutoff=0.6)
    hint = f"did you mean {', '.join(by_lower[c] for c in close)}? " if close else ""
    raise ProfileError(f"unknown hardware {name!r}; {hint}allowed: {', '.join(names)} or a path to a profile .json")


def load(name_or_path: str) -> HardwareProfile:
    """A profile by name (case-insensitive, or a unique prefix) or any profile JSON by path."""
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        return load_profile_file(p)
    return load_profile_file(_by_name()[resolve_name(name_or_path)])


__all__ = ["HardwareProfile", "available", "load", "resolve_name", "load_profile_file", "profile_from_dict",
           "PROFILES_DIR"]
