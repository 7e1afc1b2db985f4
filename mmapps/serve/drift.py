"""Drift statistics: a served model's recent scores and inputs against its validation distribution.

The reference comes from the export's ``model.json`` (the validation split, written at export time);
the recent side is a sliding window of the last ``window`` served samples. Two statistics per
numeric feature, both from NumPy/SciPy, no drift library:

- **PSI** (population stability index) over `PSI_BINS` equal-probability bins of the reference: ``sum((o - e) * ln(o / e))`` with
  both fractions floored at ``PSI_EPS``. Customary reading: < 0.1 stable, 0.1-0.25 moderate,
  > 0.25 a real shift; the alert threshold is `PSI_ALERT` (0.2).
- **KS** (one-sample Kolmogorov-Smirnov): the largest gap between the window's empirical CDF and the
  reference CDF (piecewise linear between the reference's bin edges), with its p-value from SciPy's
  exact ``kstwo`` distribution for the window size.

Categorical features (scanner, view, modality presence) get PSI over their categories; a category
the validation split never had is counted in ``"<other>"``.

Reference formats accepted for a numeric feature (a ``dict`` in ``model.json``):

- ``{"bin_edges": [e0, ..., eK], "counts": [c1, ..., cK]}`` (a histogram; edges increasing), or
- ``{"quantiles": [q0, ..., qK], "probs": [p0, ..., pK]}`` (``probs`` defaults to evenly spaced
  0..1), which is the same CDF read at other points.

and for a categorical one ``{"categories": {"PA": 0.61, "AP": 0.39}}`` (counts or fractions).
`numeric_reference` / `categorical_reference` build these from validation values.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PSI_EPS = 1e-4
PSI_BINS = 10
PSI_ALERT = 0.2
KS_ALPHA = 0.01
OTHER = "<other>"


class DriftReferenceError(ValueError):
    """A reference distribution in ``model.json`` has the wrong shape."""


@dataclass(frozen=True)
class DriftStat:
    """One feature's drift over the current window."""

    psi: float
    ks: float | None  # None for categorical features
    ks_pvalue: float | None
    n: int

    @property
    def drifted(self) -> bool:
        """PSI at or above `PSI_ALERT`, or the KS test rejecting at `KS_ALPHA`."""
        return self.psi >= PSI_ALERT or (self.ks_pvalue is not None and self.ks_pvalue < KS_ALPHA)


def numeric_reference(values: Sequence[float] | np.ndarray, bins: int = 20) -> dict:
    """A ``{"quantiles", "probs"}`` reference from validation values (quantile bins)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise DriftReferenceError("numeric_reference needs at least one finite value; got none")
    probs = np.linspace(0.0, 1.0, bins + 1)
    return {"quantiles": np.quantile(x, probs).tolist(), "probs": probs.tolist()}


def categorical_reference(values: Iterable[object]) -> dict:
    """A ``{"categories": {name: fraction}}`` reference from validation values."""
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    total = sum(counts.values())
    if total == 0:
        raise DriftReferenceError("categorical_reference needs at least one value; got none")
    return {"categories": {k: c / total for k, c in sorted(counts.items())}}


class NumericReference:
    """A validation CDF given at increasing points ``x`` with cumulative probabilities ``p``."""

    def __init__(self, spec: Mapping, where: str) -> None:
        if "bin_edges" in spec and "counts" in spec:
            x = np.asarray(spec["bin_edges"], dtype=np.float64)
            c = np.asarray(spec["counts"], dtype=np.float64)
            if x.ndim != 1 or c.shape != (x.size - 1,) or x.size < 2 or (c < 0).any() or c.sum() <= 0:
                raise DriftReferenceError(
                    f"{where}: a histogram reference needs K+1 increasing bin_edges and K non-negative counts "
                    f"with a positive total; got {x.size} edges and {c.size} counts"
                )
            p = np.concatenate([[0.0], np.cumsum(c) / c.sum()])
        elif "quantiles" in spec:
            x = np.asarray(spec["quantiles"], dtype=np.float64)
            p = np.asarray(spec.get("probs", np.linspace(0.0, 1.0, x.size)), dtype=np.float64)
            if x.ndim != 1 or x.size < 2 or p.shape != x.shape or p[0] != 0.0 or p[-1] != 1.0:
                raise DriftReferenceError(
                    f"{where}: a quantile reference needs >= 2 quantiles and probs from 0 to 1 of the same length; "
                    f"got {x.size} quantiles and {p.size} probs"
                )
        else:
            raise DriftReferenceError(
                f"{where}: a numeric reference needs 'bin_edges' + 'counts' or 'quantiles' (+ 'probs'); "
                f"found keys {sorted(spec)}"
            )
        if not np.isfinite(x).all() or (np.diff(x) < 0).any() or (np.diff(p) < 0).any():
            raise DriftReferenceError(f"{where}: reference points and probabilities must be finite and non-decreasing")
        # Quantiles of a point mass repeat; keep the last probability at each repeated point.
        keep = np.append(np.diff(x) > 0, True)
        self.x, self.p = x[keep], p[keep]
        if self.x.size < 2:  # a constant feature: a tiny interval keeps the CDF a function
            self.x = np.array([self.x[0], self.x[0] + 1e-9])
            self.p = np.array([0.0, 1.0])
        # PSI on at most PSI_BINS equal-probability bins: with more bins its small-sample bias
        # (about (bins - 1) / n) would cross the alert threshold on in-distribution windows.
        edges = np.unique(np.interp(np.linspace(0.0, 1.0, PSI_BINS + 1), self.p, self.x))
        self.psi_edges = edges if edges.size >= 2 else self.x
        self.fractions = np.diff(self.cdf(self.psi_edges))

    def cdf(self, v: np.ndarray) -> np.ndarray:
        return np.interp(v, self.x, self.p, left=0.0, right=1.0)

    def stat(self, values: np.ndarray) -> DriftStat:
        from scipy.stats import kstwo

        v = np.sort(values)
        n = v.size
        ref = self.cdf(v)
        ecdf_hi = np.arange(1, n + 1) / n
        ecdf_lo = np.arange(0, n) / n
        d = float(max(np.max(ecdf_hi - ref), np.max(ref - ecdf_lo)))
        # Outer bins are open: a value beyond the validation range counts in the first/last bin.
        idx = np.clip(np.searchsorted(self.psi_edges, v, side="right") - 1, 0, self.fractions.size - 1)
        observed = np.bincount(idx, minlength=self.fractions.size) / n
        return DriftStat(psi=psi(self.fractions, observed), ks=d, ks_pvalue=float(kstwo.sf(d, n)), n=n)


class CategoricalReference:
    """Validation fractions per category; unseen categories pool in `OTHER`."""

    def __init__(self, spec: Mapping, where: str) -> None:
        cats = spec.get("categories")
        if not isinstance(cats, Mapping) or not cats or any(float(c) < 0 for c in cats.values()):
            raise DriftReferenceError(
                f"{where}: a categorical reference needs 'categories': {{name: count or fraction}} with non-negative "
                f"values; found {type(cats).__name__}"
            )
        total = float(sum(float(c) for c in cats.values()))
        if total <= 0:
            raise DriftReferenceError(f"{where}: the categories' counts sum to 0")
        self.names = sorted(str(k) for k in cats) + [OTHER]
        self.fractions = np.array([float(cats[k]) / total for k in sorted(cats, key=str)] + [0.0])

    def stat(self, values: Sequence[str]) -> DriftStat:
        index = {k: i for i, k in enumerate(self.names)}
        counts = np.zeros(len(self.names))
        for v in values:
            counts[index.get(v, len(self.names) - 1)] += 1
        return DriftStat(psi=psi(self.fractions, counts / max(len(values), 1)), ks=None, ks_pvalue=None, n=len(values))


def psi(expected: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index of two fraction vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_EPS)
    o = np.maximum(np.asarray(observed, dtype=np.float64), PSI_EPS)
    return float(np.sum((o - e) * np.log(o / e)))


def build_reference(spec: Mapping, where: str) -> NumericReference | CategoricalReference:
    """A reference from its ``model.json`` form (see the module docstring)."""
    if not isinstance(spec, Mapping):
        raise DriftReferenceError(f"{where}: a drift reference must be a mapping; found {type(spec).__name__}")
    if "categories" in spec:
        return CategoricalReference(spec, where)
    return NumericReference(spec, where)


class DriftWindow:
    """Sliding windows of recent values per feature, compared with their references on demand.

    Args:
        references: feature name -> reference spec (numeric or categorical).
        window: the number of most recent values kept per feature.
        min_samples: below this many values a feature reports nothing (its statistics would be noise).
        where: names the references' origin in errors (e.g. ``"model.json drift.scores"``).
    """

    def __init__(self, references: Mapping[str, Mapping], window: int = 500, min_samples: int = 100,
                 where: str = "drift reference") -> None:
        if window < 1 or min_samples < 1:
            raise ValueError(f"drift window and min_samples must be >= 1; got {window} and {min_samples}")
        self.references = {name: build_reference(spec, f"{where} {name!r}") for name, spec in references.items()}
        self.min_samples = min_samples
        self._values: dict[str, deque] = {name: deque(maxlen=window) for name in self.references}

    def add(self, name: str, values: Iterable) -> None:
        """Append values of one feature (ignored if the feature has no reference; non-finite dropped)."""
        ref = self.references.get(name)
        if ref is None:
            return
        buf = self._values[name]
        if isinstance(ref, CategoricalReference):
            buf.extend(str(v) for v in values)
        else:
            buf.extend(float(v) for v in np.asarray(values, dtype=np.float64).ravel() if math.isfinite(v))

    def stats(self) -> dict[str, DriftStat]:
        """Each feature with at least ``min_samples`` values -> its `DriftStat` over the window."""
        out: dict[str, DriftStat] = {}
        for name, ref in self.references.items():
            buf = self._values[name]
            if len(buf) < self.min_samples:
                continue
            if isinstance(ref, CategoricalReference):
                out[name] = ref.stat(list(buf))
            else:
                out[name] = ref.stat(np.fromiter(buf, dtype=np.float64, count=len(buf)))
        return out
