"""Step-law forms: candidate formulas for steps to minimum validation loss, and their fit.

Every form is a special case of one law at the reference batch B_ref (T = tokens per
example, so D / (B_ref·T) is the number of steps in one epoch)::

    S(M, D) = a · D^γ · M^(−k) + b + epochs_min · D / (B_ref · T)

=============  =====================================  ==========================================
form           formula                                fitted
=============  =====================================  ==========================================
``power``      a · D · M^(−k) + b                     a, k, b          (γ = 1: Hestness et al.
                                                                        2017's "steps ∝ data")
``power_gamma`` a · D^γ · M^(−k) + b                  a, k, γ, b
``power_nob``  a · D^γ · M^(−k)                       a, k, γ          (no additive floor b)
``epochs``     D/(B_ref·T) · (e_min + c · D^δ · M^−k)  c, k, δ, e_min   (a minimum number of
                                                                        epochs e_min plus a
                                                                        part that falls with M)
=============  =====================================  ==========================================

``epochs`` maps onto the law as a = c/(B_ref·T), γ = 1 + δ, b = 0, epochs_min = e_min.
Fits are least squares on log steps (``scipy.optimize.least_squares``, soft-L1 loss with
scale :data:`F_SCALE`), with M, D and S divided by their geometric means for conditioning.
A run that hit the epoch cap is a lower bound: its residual counts only where the law
predicts fewer steps than observed, in every form.

Any form can carry a floor at a minimum number of epochs, ``S ≥ e_min · D/(B_ref·T)``
(:func:`with_floor`, name suffix ``+floor``), fitted as a smooth maximum in log space,
``log S = logaddexp(σ·log S_form, σ·log S_floor) / σ`` with sharpness σ = :data:`SMOOTH`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

F_SCALE = 0.1   # soft-L1 scale in log units: residuals beyond ~10 % count linearly
SMOOTH = 10.0   # sharpness of the smooth maximum with the epoch floor, in log space
LAW_FIELDS = ("a", "k", "gamma", "b", "epochs_min", "e_min")


@dataclass(frozen=True)
class Form:
    name: str
    params: tuple[str, ...]        # fitted parameters, in theta order
    formula: str

    @property
    def n_params(self) -> int:
        return len(self.params)


FORMS = {f.name: f for f in (
    Form("power", ("log_a", "k", "b"), "a*D*M^-k + b"),
    Form("power_gamma", ("log_a", "k", "gamma", "b"), "a*D^gamma*M^-k + b"),
    Form("power_nob", ("log_a", "k", "gamma"), "a*D^gamma*M^-k"),
    Form("epochs", ("log_c", "k", "delta", "log_e_min"), "D/(B*T) * (e_min + c*D^delta*M^-k)"),
)}
FLOOR = "+floor"


def with_floor(form: Form) -> Form:
    """``form`` with a fitted floor at ``e_min`` epochs (extra parameter ``log_floor``)."""
    return Form(form.name + FLOOR, form.params + ("log_floor",), form.formula + ", at least e_min*D/(B*T)")


def get_form(name: str) -> Form:
    base = FORMS.get(name.removesuffix(FLOOR))
    if base is None:
        from ..errors import PerfmodelError
        raise PerfmodelError(f"law form {name!r} is not known; allowed: {', '.join(FORMS)} "
                             f"(each optionally with {FLOOR})")
    return with_floor(base) if name.endswith(FLOOR) else base


_BOUNDS = {"log_a": (-np.inf, np.inf), "log_c": (-np.inf, np.inf), "k": (-5.0, 5.0), "gamma": (0.0, 3.0),
           "delta": (-2.0, 2.0), "b": (0.0, np.inf), "log_e_min": (-30.0, 30.0),
           "log_floor": (-np.inf, np.inf)}


class Scaled:
    """Runs divided by geometric means (M0, D0, S0); ``e`` = steps per epoch / S0."""

    def __init__(self, M, D, S, spe):
        M, D, S, spe = (np.asarray(v, dtype=float) for v in (M, D, S, spe))
        self.M0, self.D0, self.S0 = (float(np.exp(np.mean(np.log(v)))) for v in (M, D, S))
        self.m, self.d, self.log_s, self.e = M / self.M0, D / self.D0, np.log(S / self.S0), spe / self.S0

    def at(self, M, D, spe):
        """Scaled (m, d, e) of new points."""
        return (np.asarray(M, float) / self.M0, np.asarray(D, float) / self.D0, np.asarray(spe, float) / self.S0)


def log_pred(form: Form, theta, m, d, e):
    """log(S / S0) of ``form`` at scaled points."""
    p = dict(zip(form.params, theta, strict=True))
    if form.name.startswith("epochs"):
        out = np.log(e) + np.log(np.exp(p["log_e_min"]) + np.exp(p["log_c"]) * d ** p["delta"] * m ** (-p["k"]))
    else:
        out = np.log(np.exp(p["log_a"]) * d ** p.get("gamma", 1.0) * m ** (-p["k"]) + p.get("b", 0.0))
    if "log_floor" in p:
        out = np.logaddexp(SMOOTH * out, SMOOTH * (p["log_floor"] + np.log(e))) / SMOOTH
    return out


def _starts(form: Form, sc: Scaled):
    base = float(np.median(sc.log_s - np.log(sc.e)))  # log epochs of a typical run
    floor = [float(np.min(sc.log_s - np.log(sc.e)))] if form.name.endswith(FLOOR) else []
    for x in _base_starts(form, base):
        yield np.concatenate([x, floor])


def _base_starts(form, base):
    for k in (0.0, 0.5, 1.0, 2.0):
        if form.name.startswith("epochs"):
            for delta in (-0.5, 0.0, 0.5):
                for share in (0.1, 0.7):
                    yield np.array([base + math.log(share), k, delta, base + math.log(1 - share)])
        else:
            for b in ((0.0, 0.5) if "b" in form.params else (None,)):
                for gamma in ((0.5, 1.0) if "gamma" in form.params else (None,)):
                    x = [math.log(1 - (b or 0.0)), k]
                    x += [gamma] if gamma is not None else []
                    x += [b] if b is not None else []
                    yield np.array(x)


def fit_form(form: Form, sc: Scaled, capped, x0=None):
    """Best ``least_squares`` result over the starts (or from ``x0``) for ``form`` on ``sc``."""
    capped = np.asarray(capped, bool)
    lo, hi = (np.array([_BOUNDS[p][i] for p in form.params]) for i in (0, 1))

    def resid(theta):
        r = log_pred(form, theta, sc.m, sc.d, sc.e) - sc.log_s
        return np.where(capped, np.minimum(r, 0.0), r)

    starts = [x0] if x0 is not None else list(_starts(form, sc))
    best = None
    for x in starts:
        x = np.clip(x, lo + 1e-9, hi - 1e-9)
        with np.errstate(all="ignore"):
            r = least_squares(resid, x, bounds=(lo, hi), loss="soft_l1", f_scale=F_SCALE)
        if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    return best


def natural(form: Form, theta, sc: Scaled, batch_ref: float, tokens_per_example: float) -> dict[str, float]:
    """The law's fields (a, k, gamma, b, epochs_min) in natural units from scaled ``theta``."""
    p = dict(zip(form.params, (float(t) for t in theta), strict=True))
    k = p["k"]
    floor = {"e_min": math.exp(p["log_floor"])} if "log_floor" in p else {}
    if form.name.startswith("epochs"):
        gamma = 1.0 + p["delta"]
        c = math.exp(p["log_c"]) * sc.D0 ** (-p["delta"]) * sc.M0 ** k
        return {"a": c / (batch_ref * tokens_per_example), "k": k, "gamma": gamma, "b": 0.0,
                "epochs_min": math.exp(p["log_e_min"]), **floor}
    gamma = p.get("gamma", 1.0)
    a = math.exp(p["log_a"]) * sc.S0 * sc.D0 ** (-gamma) * sc.M0 ** k
    return {"a": a, "k": k, "gamma": gamma, "b": p.get("b", 0.0) * sc.S0, "epochs_min": 0.0, **floor}
