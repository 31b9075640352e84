"""Service-time distributions of the scenario files, sampled vectorised from a numpy
Generator. Parameters carry units; samples are minutes."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from twin.scenario.units import minutes

Minutes = Annotated[float, BeforeValidator(minutes)]


class Dist(BaseModel):
    """``dist``: fixed (value), exponential (mean), lognormal (median, sigma),
    triangular (low, mode, high), uniform (low, high), gamma (mean, cv), quantiles
    (points: [[probability, minutes], ...] from probability 0 to 1, sampled by linear
    interpolation of the inverse CDF: a measured median and IQR are met exactly, however
    skewed)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dist: Literal["fixed", "exponential", "lognormal", "triangular", "uniform", "gamma",
                  "quantiles"]
    value: Minutes | None = None
    mean: Minutes | None = None
    median: Minutes | None = None
    sigma: float | None = Field(None, gt=0, description="log-scale sd (lognormal)")
    cv: float | None = Field(None, gt=0, description="coefficient of variation (gamma)")
    low: Minutes | None = None
    mode: Minutes | None = None
    high: Minutes | None = None
    points: list[tuple[float, Minutes]] | None = Field(
        None, description="quantiles: (probability, minutes), probabilities 0 to 1 rising, "
        "minutes not falling")
    source: str | None = Field(None, description="where the numbers come from")

    @model_validator(mode="after")
    def _complete(self) -> Dist:
        need = {
            "fixed": ("value",), "exponential": ("mean",), "lognormal": ("median", "sigma"),
            "triangular": ("low", "mode", "high"), "uniform": ("low", "high"),
            "gamma": ("mean", "cv"), "quantiles": ("points",),
        }[self.dist]
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{self.dist} needs {', '.join(missing)}")
        for n in ("value", "mean", "median", "low", "mode", "high"):
            v = getattr(self, n)
            if v is not None and v < 0:
                raise ValueError(f"{n} must not be negative")
        if self.dist == "triangular" and not (
                self._p("low") <= self._p("mode") <= self._p("high")):
            raise ValueError("triangular needs low <= mode <= high")
        if self.dist == "uniform" and self._p("low") > self._p("high"):
            raise ValueError("uniform needs low <= high")
        if self.dist == "quantiles":
            probs = [q for q, _ in self._points()]
            values = [v for _, v in self._points()]
            if len(probs) < 2 or probs[0] != 0 or probs[-1] != 1 or any(
                    b <= a for a, b in pairwise(probs)):
                raise ValueError("quantiles need probabilities from 0 to 1, rising")
            if any(v < 0 for v in values) or any(b < a for a, b in pairwise(values)):
                raise ValueError("quantiles need minutes not negative and not falling")
        return self

    def _points(self) -> list[tuple[float, float]]:
        assert self.points is not None
        return self.points

    def _p(self, name: str) -> float:
        """A parameter this distribution needs (present: the validator checked it)."""
        value = getattr(self, name)
        assert value is not None, name
        return value

    @property
    def mean_minutes(self) -> float:
        d, p = self.dist, self._p
        if d == "fixed":
            return p("value")
        if d in ("exponential", "gamma"):
            return p("mean")
        if d == "lognormal":
            return p("median") * math.exp(p("sigma") ** 2 / 2)
        if d == "triangular":
            return (p("low") + p("mode") + p("high")) / 3
        if d == "quantiles":  # the mean of the piecewise-linear inverse CDF
            return sum((q1 - q0) * (v0 + v1) / 2
                       for (q0, v0), (q1, v1) in pairwise(self._points()))
        return (p("low") + p("high")) / 2

    def survival(self, x: np.ndarray) -> np.ndarray:
        """P(S > x), from the parameters (SciPy's closed forms; the quantiles'
        piecewise-linear inverse CDF inverted exactly): what validation integrates."""
        from scipy import stats

        d, p = self.dist, self._p
        if d == "fixed":
            return (np.asarray(x) < p("value")).astype(float)
        if d == "quantiles":
            probs, values = zip(*self._points(), strict=True)
            return 1 - np.interp(x, values, probs, left=0.0, right=1.0)
        if d == "exponential":
            return stats.expon(scale=p("mean")).sf(x)
        if d == "lognormal":
            return stats.lognorm(p("sigma"), scale=p("median")).sf(x)
        if d == "gamma":
            return stats.gamma(1 / p("cv") ** 2, scale=p("mean") * p("cv") ** 2).sf(x)
        if d == "uniform":
            return stats.uniform(p("low"), p("high") - p("low")).sf(x)
        low, width = p("low"), p("high") - p("low")
        return stats.triang((p("mode") - low) / width, low, width).sf(x)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        d, p = self.dist, self._p
        if d == "fixed":
            return np.full(n, p("value"), dtype=float)
        if d == "exponential":
            return rng.exponential(p("mean"), n)
        if d == "lognormal":
            return rng.lognormal(math.log(p("median")), p("sigma"), n)
        if d == "triangular":
            if p("low") == p("high"):
                return np.full(n, p("low"), dtype=float)
            return rng.triangular(p("low"), p("mode"), p("high"), n)
        if d == "uniform":
            return rng.uniform(p("low"), p("high"), n)
        if d == "quantiles":
            probs, values = zip(*self._points(), strict=True)
            return np.interp(rng.random(n), probs, values)
        shape = 1 / p("cv") ** 2
        return rng.gamma(shape, p("mean") / shape, n)
