"""Service-time distributions of the scenario files, sampled vectorised from a numpy
Generator. Parameters carry units; samples are minutes."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from twin.scenario.units import minutes

Minutes = Annotated[float, BeforeValidator(minutes)]


class Dist(BaseModel):
    """``dist``: fixed (value), exponential (mean), lognormal (median, sigma),
    triangular (low, mode, high), uniform (low, high), gamma (mean, cv)."""

    model_config = ConfigDict(extra="forbid")

    dist: Literal["fixed", "exponential", "lognormal", "triangular", "uniform", "gamma"]
    value: Minutes | None = None
    mean: Minutes | None = None
    median: Minutes | None = None
    sigma: float | None = Field(None, gt=0, description="log-scale sd (lognormal)")
    cv: float | None = Field(None, gt=0, description="coefficient of variation (gamma)")
    low: Minutes | None = None
    mode: Minutes | None = None
    high: Minutes | None = None
    source: str | None = Field(None, description="where the numbers come from")

    @model_validator(mode="after")
    def _complete(self) -> Dist:
        need = {
            "fixed": ("value",), "exponential": ("mean",), "lognormal": ("median", "sigma"),
            "triangular": ("low", "mode", "high"), "uniform": ("low", "high"),
            "gamma": ("mean", "cv"),
        }[self.dist]
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{self.dist} needs {', '.join(missing)}")
        for n in ("value", "mean", "median", "low", "mode", "high"):
            v = getattr(self, n)
            if v is not None and v < 0:
                raise ValueError(f"{n} must not be negative")
        if self.dist == "triangular" and not (self.low <= self.mode <= self.high):  # type: ignore[operator]
            raise ValueError("triangular needs low <= mode <= high")
        if self.dist == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError("uniform needs low <= high")
        return self

    @property
    def mean_minutes(self) -> float:
        d = self.dist
        if d == "fixed":
            return self.value  # type: ignore[return-value]
        if d in ("exponential", "gamma"):
            return self.mean  # type: ignore[return-value]
        if d == "lognormal":
            return self.median * math.exp(self.sigma**2 / 2)  # type: ignore[operator]
        if d == "triangular":
            return (self.low + self.mode + self.high) / 3  # type: ignore[operator]
        return (self.low + self.high) / 2  # type: ignore[operator]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        d = self.dist
        if d == "fixed":
            return np.full(n, self.value, dtype=float)
        if d == "exponential":
            return rng.exponential(self.mean, n)
        if d == "lognormal":
            return rng.lognormal(math.log(self.median), self.sigma, n)  # type: ignore[arg-type]
        if d == "triangular":
            if self.low == self.high:
                return np.full(n, self.low, dtype=float)
            return rng.triangular(self.low, self.mode, self.high, n)
        if d == "uniform":
            return rng.uniform(self.low, self.high, n)
        shape = 1 / self.cv**2  # type: ignore[operator]
        return rng.gamma(shape, self.mean / shape, n)  # type: ignore[operator]


def fixed(value_min: float) -> Dist:
    return Dist(dist="fixed", value=f"{value_min} min")
