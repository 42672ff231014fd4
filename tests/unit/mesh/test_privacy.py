"""Privacy rules (mesh/privacy.py): scope matching, config errors, the Laplace mechanism and aggregates."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from crdt.errors import LocalProtocolError
from mesh.config import Config, ConfigError
from mesh.privacy import (
    AggregateRule,
    PrivacySettings,
    aggregate,
    check_glob,
    laplace_noise,
    laplace_scale,
    numeric,
    release,
)


def settings(**raw) -> PrivacySettings:
    return PrivacySettings.model_validate(raw)


def config(**raw) -> Config:
    return Config.from_dict({"name": "n", **raw}, data_dir=Path("."))


def rule(**over) -> AggregateRule:
    return AggregateRule.model_validate(
        {"key": "agg/x", "source": "priv/*", "function": "mean", "epsilon": 1.0, "sensitivity": 1.0, **over}
    )


# -- scopes ---------------------------------------------------------------------------


def test_scope_is_the_first_match_local_before_zone_before_shared():
    s = settings(local_only=["health/*", "cam/?/raw"], zone_only=["health/*/avg", "floor/[12]/*"])
    assert s.scope_of("health/alice/avg") == "local"  # both match: local wins
    assert s.scope_of("cam/3/raw") == "local"
    assert s.scope_of("cam/33/raw") == "shared"  # ? is one character
    assert s.scope_of("floor/1/temp") == "zone"
    assert s.scope_of("floor/3/temp") == "shared"
    assert s.scope_of("Health/alice") == "shared"  # case-sensitive
    assert s.scope_of("kitchen/temp") == "shared"


def test_star_also_matches_slashes():
    assert settings(local_only=["secret*"]).scope_of("secret/a/b/c") == "local"


def test_no_privacy_section_means_every_key_is_shared():
    assert config().privacy.scope_of("anything") == "shared"


# -- config errors name the field --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"privacy": {"local_only": ["room[1"]}}, r"privacy\.local_only: .*unclosed '\['"),
        ({"privacy": {"zone_only": [""]}, "location": "lab"}, r"privacy\.zone_only: .*non-empty"),
        ({"privacy": {"local_only": [7]}}, r"privacy\.local_only\.0: "),
        ({"privacy": {"zone_only": ["z/*"]}}, r"privacy\.zone_only needs `location`"),
        ({"privacy": {"local_only": ["a/*"], "zone_only": ["a/*"]}, "location": "lab"}, "in both local_only and zone_only"),
        ({"privacy": {"aggregates": [{"key": "k", "source": "s", "function": "mean", "epsilon": 0, "sensitivity": 1}]}},
         r"privacy\.aggregates\.0\.epsilon: .*greater than 0"),
        ({"privacy": {"aggregates": [{"key": "k", "source": "s", "function": "mean", "epsilon": -1, "sensitivity": 1}]}},
         r"privacy\.aggregates\.0\.epsilon: "),
        ({"privacy": {"aggregates": [{"key": "k", "source": "s", "function": "mean", "epsilon": 1, "sensitivity": 0}]}},
         r"privacy\.aggregates\.0\.sensitivity: "),
        ({"privacy": {"aggregates": [{"key": "k", "source": "s", "function": "median", "epsilon": 1,
                                      "sensitivity": 1}]}}, r"privacy\.aggregates\.0\.function: "),
        ({"privacy": {"aggregates": [{"key": "k", "source": "s", "function": "sum", "epsilon": 1, "sensitivity": 1,
                                      "bounds": [5, 1]}]}}, r"privacy\.aggregates\.0\.bounds: .*lo < hi"),
        ({"privacy": {"aggregates": [{"key": "k", "source": "s", "function": "sum", "epsilon": 1, "sensitivity": 1,
                                      "every": 0}]}}, r"privacy\.aggregates\.0\.every: "),
        ({"privacy": {"local_only": ["k*"], "aggregates": [{"key": "k", "source": "s", "function": "sum",
                                                             "epsilon": 1, "sensitivity": 1}]}}, "is local-only"),
        ({"privacy": {"aggregates": [{"key": "k", "source": "s", "function": "sum", "epsilon": 1, "sensitivity": 1}] * 2}},
         "two aggregates write the key 'k'"),
        ({"privacy": {"local": ["a"]}}, r"privacy\.local: unknown field"),
    ],
)
def test_bad_privacy_config_is_refused_naming_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        config(**raw)


def test_a_good_privacy_config_loads():
    cfg = config(location="lab", privacy={
        "local_only": ["health/*"], "zone_only": ["floor/*"],
        "aggregates": [{"key": "stats/mean-hr", "source": "health/*", "function": "mean", "epsilon": 0.5,
                        "sensitivity": 2.0, "every": 30, "bounds": [40, 200]}],
    })
    assert cfg.privacy.aggregates[0].scale == 4.0
    # An aggregate key must itself be shared: "health/mean-hr" matches "health/*" (local) ...
    with pytest.raises(ConfigError, match="is local-only"):
        config(privacy={"local_only": ["health/*"], "aggregates": [
            {"key": "health/mean-hr", "source": "health/*", "function": "mean", "epsilon": 1, "sensitivity": 1}]})


def test_check_glob_accepts_bracket_forms_fnmatch_reads_as_classes():
    for pattern in ("a[]]b", "a[!]]b", "[[]x", "a[!0-9]", "x*?"):
        assert check_glob(pattern) == pattern
    for pattern in ("a[", "a[!", "a[]", "x" * 300):
        with pytest.raises(ValueError):
            check_glob(pattern)


# -- the Laplace mechanism ------------------------------------------------------------------


def test_scale_is_sensitivity_over_epsilon():
    assert laplace_scale(2.0, 0.5) == 4.0
    assert rule(epsilon=0.1, sensitivity=3.0).scale == pytest.approx(30.0)
    for bad in ((0, 1), (1, 0), (-1, 1), (1, math.inf), (math.nan, 1)):
        with pytest.raises(LocalProtocolError, match="privacy: "):
            laplace_scale(*bad)
    with pytest.raises(LocalProtocolError, match="privacy: "):
        laplace_noise(0.0, random.Random(1))


@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_laplace_samples_have_mean_zero_and_mean_absolute_value_scale(scale):
    n = 20_000
    rng = random.Random(20261124)
    xs = [laplace_noise(scale, rng) for _ in range(n)]
    # Laplace(0, b): mean 0 with standard deviation sqrt(2)·b; |X| ~ Exp(b): mean b, sd b.
    # Five standard errors: a correct sampler fails this about once in 1.7 million seeds.
    assert abs(sum(xs) / n) < 5 * math.sqrt(2) * scale / math.sqrt(n)
    assert abs(sum(map(abs, xs)) / n - scale) < 5 * scale / math.sqrt(n)
    # The tail: P(|X| > b·ln 10) = 1/10 (a Gaussian of the same variance would give ~0.10 too, so also ln 100).
    for p in (0.1, 0.01):
        frac = sum(abs(x) > scale * math.log(1 / p) for x in xs) / n
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_laplace_noise_comes_only_from_the_rng_passed_in():
    assert [laplace_noise(1.0, random.Random(3)) for _ in range(3)] == [laplace_noise(1.0, random.Random(3))] * 3
    assert laplace_noise(1.0, random.Random(3)) != laplace_noise(1.0, random.Random(4))


# -- aggregates -------------------------------------------------------------------------------


def test_aggregate_functions_and_bounds():
    vals = [1.0, 2.0, 10.0]
    assert aggregate("mean", vals) == pytest.approx(13 / 3)
    assert aggregate("sum", vals) == 13.0
    assert aggregate("count", vals) == 3.0
    assert aggregate("min", vals) == 1.0 and aggregate("max", vals) == 10.0
    assert aggregate("max", vals, bounds=(0.0, 5.0)) == 5.0  # clamped first
    assert aggregate("sum", vals, bounds=(2.0, 5.0)) == 9.0
    assert aggregate("count", []) == 0.0 and aggregate("sum", []) == 0.0
    assert aggregate("mean", []) is None and aggregate("min", []) is None
    with pytest.raises(LocalProtocolError):
        aggregate("median", vals)


def test_numeric_takes_numbers_only():
    assert numeric(3) == 3.0 and numeric(2.5) == 2.5
    for value in (True, "3", None, [1], math.nan, math.inf):
        assert numeric(value) is None


def test_release_adds_noise_of_the_rule_scale_and_says_so():
    r = rule(function="sum", epsilon=2.0, sensitivity=1.0)
    doc = release(r, [1.0, 2.0], random.Random(5))
    expected = 3.0 + laplace_noise(0.5, random.Random(5))
    assert doc["value"] == pytest.approx(expected, abs=1e-9)
    assert doc["value"] != 3.0
    assert doc == {"value": doc["value"], "function": "sum", "epsilon": 2.0, "sensitivity": 1.0, "noisy": True}
    assert "count" not in doc  # the number of inputs is private too
    assert release(rule(function="mean"), [], random.Random(5)) is None
    # Over many releases the noise averages out around the exact value (scale 0.5, 4000 draws).
    rng = random.Random(9)
    mean = sum(release(r, [1.0, 2.0], rng)["value"] for _ in range(4000)) / 4000
    assert abs(mean - 3.0) < 5 * math.sqrt(2) * 0.5 / math.sqrt(4000)
