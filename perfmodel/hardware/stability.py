"""Whether a calibrated profile's points were measured steadily: the noise guard's record.

``perfmodel calibrate`` re-measures points whose repeats disagree and writes those that never
settled to ``calibration.provenance.unstable_points`` as ``{"count": N, "names": [...]}``
(:mod:`perfmodel.calibrate.interleave`).  :func:`unstable_warning` turns that record into the one line that
``calibrate`` prints and ``validate`` and ``predict`` repeat for such a profile.
"""
from __future__ import annotations

from collections.abc import Mapping

SHOWN_NAMES = 3


def unstable_points(profile) -> dict:
    """``calibration.provenance.unstable_points`` of a profile (a ``HardwareProfile`` or its dict); ``{}`` if none."""
    cal = profile.get("calibration") if isinstance(profile, Mapping) else getattr(profile, "calibration", None)
    return dict(((cal or {}).get("provenance") or {}).get("unstable_points") or {})


def unstable_warning(profile) -> str | None:
    """One ``warning:`` line naming how many points stayed unstable, or None when none did."""
    info = unstable_points(profile)
    n = int(info.get("count") or 0)
    if n <= 0:
        return None
    get = profile.get if isinstance(profile, Mapping) else (lambda key: getattr(profile, key, None))
    prov = ((get("calibration") or {}).get("provenance") or {})
    total = (prov.get("noise_guard") or {}).get("points")
    names = list(info.get("names") or [])
    shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
    hint = " (on a shared CPU, --threads 1 --clock cpu is steadier)" if prov.get("kind") == "cpu" else ""
    return (f"warning: {n}{f' of {total}' if total else ''} calibration point{'s' if n != 1 else ''} of profile "
            f"{get('name')!r} stayed unstable after re-measuring ({shown}): the machine looks busy; recalibrate "
            f"on an idle machine{hint} (all names in calibration.provenance.unstable_points)")
