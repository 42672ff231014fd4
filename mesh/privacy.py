"""Privacy scopes for sensor-state keys and noisy aggregates of private keys (pure: no IO, no clocks).

Theory of operation. Every key has exactly one scope, decided by this node's
``privacy`` config alone (the first match wins, local before zone before
shared):

- ``local``: the entry lives in its own store that no sync core ever sees;
  it is never sent to any peer.
- ``zone``: the entry lives in a second replicated map that syncs only with
  peers whose descriptor names the same non-empty ``location`` as this node.
- ``shared``: everything else; the sensor-state map every member replicates.

An *aggregate* turns private values into something shareable: every
``every`` seconds the node computes ``function`` over its local-only and
zone-only entries whose keys match ``source`` and whose values are numbers,
adds Laplace noise of scale ``sensitivity / epsilon`` and writes the result to
the shared map under ``key``. That is the Laplace mechanism (Dwork, McSherry,
Nissim & Smith 2006; Dwork & Roth, *The Algorithmic Foundations of
Differential Privacy*, §3.3): one release is ε-differentially private with
respect to a change of one input value, *provided* ``sensitivity`` really is
the most one value can move the function (the L1 sensitivity). ``bounds``
clamps every input first so the sensitivity can be known: with bounds
``[lo, hi]``, ``sum`` and ``min``/``max`` move by at most ``hi - lo``,
``count`` by 1 (one key added or removed), ``mean`` over ``n`` values by
``(hi - lo) / n``.

ε is per release. Releases compose (Dwork & Roth, Theorem 3.14): ``k``
releases over the same inputs cost ``k·ε`` in total, because averaging them
cancels the noise. The driver therefore releases again only when the inputs
changed since its last release, and counts the ε it has spent.

Known limit: noise from floating-point arithmetic is not exactly Laplace and
its low-order bits can leak (Mironov, CCS 2012); releases are rounded to
``ROUND_DIGITS`` significant digits, which blurs but does not prove away that
effect.
"""

from __future__ import annotations

import fnmatch
import math
import random
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crdt.errors import LocalProtocolError

LOCAL, ZONE, SHARED = "local", "zone", "shared"
SCOPES = (LOCAL, ZONE, SHARED)
Function = Literal["mean", "sum", "count", "min", "max"]
MAX_PATTERN_LEN = 256
ROUND_DIGITS = 12


def check_glob(pattern: str) -> str:
    """A key pattern as ``fnmatch`` reads it (``*``, ``?``, ``[abc]``); refuses what is surely a mistake."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError("a key pattern must be a non-empty string")
    if len(pattern) > MAX_PATTERN_LEN:
        raise ValueError(f"key pattern {pattern[:40]!r}… is longer than {MAX_PATTERN_LEN} characters")
    i = pattern.find("[")
    while i >= 0:
        # fnmatch quietly reads an unclosed '[' as a literal: "room[1" would then match nothing anyone meant.
        j = i + 1
        if pattern[j:j + 1] == "!":
            j += 1
        if pattern[j:j + 1] == "]":
            j += 1
        end = pattern.find("]", j)
        if end < 0:
            raise ValueError(f"key pattern {pattern!r} has an unclosed '[' (write [[] for a literal '[')")
        i = pattern.find("[", end + 1)
    return pattern


def matches(key: str, pattern: str) -> bool:
    """Whether ``key`` matches ``pattern`` (case-sensitive; ``*`` also matches ``/``)."""
    return fnmatch.fnmatchcase(key, pattern)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AggregateRule(_Model):
    """One noisy aggregate of private keys, released to the shared map."""

    key: str = Field(..., min_length=1, max_length=256, description="shared key the noisy result is written to")
    source: str = Field(..., description="glob over this node's local-only and zone-only keys to aggregate")
    function: Function = Field(..., description="mean, sum, count, min or max of the numeric values")
    epsilon: float = Field(
        ..., gt=0, le=100, allow_inf_nan=False,
        description="privacy loss per release: smaller is more private and noisier (noise scale = "
        "sensitivity / epsilon); repeated releases add up",
    )
    sensitivity: float = Field(
        ..., gt=0, le=1e12, allow_inf_nan=False,
        description="the most one input value can change the function's result (its L1 sensitivity); "
        "with bounds [lo, hi]: hi - lo for sum/min/max, 1 for count, (hi - lo) / n for a mean of n values",
    )
    every: float = Field(60.0, ge=0.1, le=86_400, description="seconds between releases (skipped while inputs are unchanged)")
    bounds: tuple[float, float] | None = Field(
        None, description="[lo, hi]: clamp each input into this range first, so the sensitivity holds",
    )

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        return check_glob(value)

    @field_validator("bounds")
    @classmethod
    def _check_bounds(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None:
            lo, hi = value
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"must be [lo, hi] with finite lo < hi, got {list(value)}")
        return value

    @property
    def scale(self) -> float:
        """The Laplace scale b = sensitivity / epsilon."""
        return laplace_scale(self.sensitivity, self.epsilon)


class PrivacySettings(_Model):
    """Which sensor-state keys never leave the node, which stay in its zone, and noisy aggregates of them."""

    local_only: list[str] = Field(
        default_factory=list,
        description="key globs that never leave this node: kept in their own file, never synced",
    )
    zone_only: list[str] = Field(
        default_factory=list,
        description="key globs synced only with peers whose location equals this node's (location must be set)",
    )
    aggregates: list[AggregateRule] = Field(
        default_factory=list, description="noisy aggregates of private keys, released to the shared map",
    )

    @field_validator("local_only", "zone_only")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            check_glob(pattern)
        return value

    @model_validator(mode="after")
    def _check_rules(self) -> PrivacySettings:
        both = sorted(set(self.local_only) & set(self.zone_only))
        if both:
            raise ValueError(f"pattern {both[0]!r} is in both local_only and zone_only; a key has one scope")
        seen: set[str] = set()
        for rule in self.aggregates:
            if rule.key in seen:
                raise ValueError(f"aggregates: two aggregates write the key {rule.key!r}")
            seen.add(rule.key)
            scope = self.scope_of(rule.key)
            if scope != SHARED:
                raise ValueError(
                    f"aggregates: key {rule.key!r} is {scope}-only by this config; an aggregate is written "
                    "to the shared map, so give it a key no local_only/zone_only pattern matches"
                )
        return self

    def scope_of(self, key: str) -> str:
        """``local``, ``zone`` or ``shared``: the first matching list wins, in that order."""
        if any(matches(key, p) for p in self.local_only):
            return LOCAL
        if any(matches(key, p) for p in self.zone_only):
            return ZONE
        return SHARED


# -- the Laplace mechanism ------------------------------------------------------------


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """b = Δf / ε (Dwork & Roth §3.3)."""
    if not (sensitivity > 0 and epsilon > 0 and math.isfinite(sensitivity) and math.isfinite(epsilon)):
        raise LocalProtocolError(f"privacy: sensitivity and epsilon must be positive and finite, got {sensitivity}, {epsilon}")
    return sensitivity / epsilon


def laplace_noise(scale: float, rng: random.Random) -> float:
    """One sample of Laplace(0, scale): the difference of two Exp(1/scale) samples."""
    if not (scale > 0 and math.isfinite(scale)):
        raise LocalProtocolError(f"privacy: the Laplace scale must be positive and finite, got {scale}")
    # expovariate is -log(1 - U) with U in [0, 1): never log(0), unlike the inverse CDF at U = 0.
    return rng.expovariate(1.0 / scale) - rng.expovariate(1.0 / scale)


def numeric(value: object) -> float | None:
    """``value`` as a finite float if it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def aggregate(function: str, values: Iterable[float], bounds: tuple[float, float] | None = None) -> float | None:
    """The exact aggregate of ``values`` (clamped into ``bounds``); None when it is undefined (no values)."""
    vals = [min(max(v, bounds[0]), bounds[1]) for v in values] if bounds else list(values)
    if function == "count":
        return float(len(vals))
    if function == "sum":
        return float(math.fsum(vals))
    if not vals:
        return None
    if function == "mean":
        return math.fsum(vals) / len(vals)
    if function == "min":
        return min(vals)
    if function == "max":
        return max(vals)
    raise LocalProtocolError(f"privacy: unknown aggregate function {function!r}")


def release(rule: AggregateRule, values: Iterable[float], rng: random.Random) -> dict | None:
    """The shared value for one release of ``rule``: the aggregate plus Laplace noise, with its ε.

    The number of inputs is deliberately not included: it is itself private.
    """
    exact = aggregate(rule.function, values, rule.bounds)
    if exact is None:
        return None
    noisy = exact + laplace_noise(rule.scale, rng)
    return {
        "value": float(f"{noisy:.{ROUND_DIGITS}g}"),
        "function": rule.function,
        "epsilon": rule.epsilon,
        "sensitivity": rule.sensitivity,
        "noisy": True,
    }
