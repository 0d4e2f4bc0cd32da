"""Every streaming check gives the same answer for any partition of its samples into blocks: the
building blocks of the short detector, the voltage-limit stop and the engine's safety monitor."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echemd.config.models import RunLimits
from echemd.daemon.safety import SafetyMonitor
from echemd.protocols.analysis.detection import VoltageLimit
from echemd.protocols.analysis.streaming import Persistence, TrailingWindow, WindowMax

partitions = st.lists(st.integers(1, 25), min_size=1, max_size=6)


def blocks(n, sizes):
    start, k = 0, 0
    while start < n:
        yield slice(start, min(n, start + sizes[k % len(sizes)]))
        start, k = start + sizes[k % len(sizes)], k + 1


def signal(seed, n=300):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.5, 1.5, n))  # uneven sampling
    return t, np.cumsum(rng.normal(0, 1, n))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), sizes=partitions, window=st.sampled_from([1, 3, 15, 31]), statistic=st.sampled_from(["median", "mean", "min"]))
def test_trailing_window(seed, sizes, window, statistic):
    t, v = signal(seed)
    whole = TrailingWindow(window, statistic).update(t, v)
    streamed = TrailingWindow(window, statistic)
    parts = [streamed.update(t[s], v[s]) for s in blocks(len(t), sizes)]
    for k in range(3):
        np.testing.assert_allclose(np.concatenate([p[k] for p in parts]), whole[k], rtol=1e-12, atol=1e-12)
    reference = {"median": np.median, "mean": np.mean, "min": np.min}[statistic]
    assert whole[2][0] == reference(v[:window]) or np.isclose(whole[2][0], reference(v[:window]))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), sizes=partitions, span=st.sampled_from([None, 0.5, 5.0, 40.0]))
def test_window_max(seed, sizes, span):
    t, v = signal(seed)
    streamed = WindowMax(span)
    got = np.concatenate([streamed.update(t[s], v[s]) for s in blocks(len(t), sizes)])
    brute = np.array([v[(t <= t[i]) & (t >= t[i] - (np.inf if span is None else span))].max() for i in range(len(t))])
    np.testing.assert_array_equal(got, brute)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
       span=st.sampled_from([None, 3.0, 40.0, 700.0]), piece=st.sampled_from([7, 1 << 16]),
       spacing=st.sampled_from([None, 1.0, 0.1]))
def test_window_max_long_blocks(seed, sizes, span, piece, spacing):
    """Blocks far longer than the span (a whole step, as `analyze` feeds them), cut into pieces or
    not, sampled unevenly or evenly (whole seconds, or tenths whose windows differ by a sample)."""
    t, v = signal(seed, n=2000)
    if spacing is not None:
        t = 5.0 + spacing * np.arange(len(t))
    streamed = WindowMax(span)
    streamed.MAX_PIECE = piece
    got = np.concatenate([streamed.update(t[s], v[s]) for s in blocks(len(t), sizes)])
    first = np.zeros(len(t), dtype=int) if span is None else np.searchsorted(t, t - span, side="left")
    brute = np.array([v[first[i]: i + 1].max() for i in range(len(t))])
    np.testing.assert_array_equal(got, brute)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), sizes=partitions, hold=st.sampled_from([0.0, 1.0, 4.0, 10.0]))
def test_persistence(seed, sizes, hold):
    t, v = signal(seed)
    holds = v > np.median(v)
    first = None
    for i in range(len(t)):  # by definition: held on every sample since the run began, for at least hold
        start = i
        while start > 0 and holds[start - 1]:
            start -= 1
        if holds[i] and t[i] - t[start] >= hold:
            first = (i, t[start])
            break
    streamed, found = Persistence(hold), None
    for s in blocks(len(t), sizes):
        hit = streamed.update(t[s], holds[s])
        if hit is not None:
            found = (s.start + hit[0], hit[1])
            break
    assert found == first


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), sizes=partitions)
def test_voltage_limit(seed, sizes):
    t, v = signal(seed)
    limit = float(np.quantile(np.abs(v), 0.9))
    whole = VoltageLimit(limit).update({"time_s": t, "voltage_V": v})
    streamed = VoltageLimit(limit)
    found = next((stop for s in blocks(len(t), sizes) if (stop := streamed.update({"time_s": t[s], "voltage_V": v[s]}))), None)
    assert found == whole and whole is not None


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), sizes=partitions, which=st.sampled_from(["charge", "compliance", "duration", "current"]))
def test_safety_monitor_names_the_same_limit_at_the_same_sample(seed, sizes, which):
    rng = np.random.default_rng(seed)
    n = 300
    t = np.arange(1.0, n + 1)
    current = rng.uniform(0, 1e-3, n)
    compliance = (rng.random(n) < 0.1).astype(np.int8)
    limits = {"charge": dict(max_charge_C=0.05), "compliance": dict(max_compliance_hits=12), "duration": dict(max_duration_s=123.5),
              "current": dict(max_abs_current_A=float(np.quantile(current, 0.95)))}[which]  # each is crossed in 300 samples
    columns = {"time_s": t, "current_A": current, "compliance": compliance}
    whole = SafetyMonitor(RunLimits(**limits)).check(columns)
    streamed = SafetyMonitor(RunLimits(**limits))
    found = next((m for s in blocks(n, sizes) if (m := streamed.check({k: v[s] for k, v in columns.items()}))), None)
    assert whole is not None and found == whole


def test_a_sample_with_no_reading_is_not_beyond_a_limit():
    """NaN (no reading) is not beyond |V| or |I| limits, and does not hide a real reading that is."""
    monitor = SafetyMonitor(RunLimits(max_abs_voltage_V=1.0))
    assert monitor.check({"time_s": np.array([1.0, 2.0]), "voltage_V": np.array([0.1, np.nan])}) is None
    message = monitor.check({"time_s": np.array([3.0, 4.0, 5.0]), "voltage_V": np.array([np.nan, -1.5, 2.0])})
    assert message.startswith("voltage_V = -1.5 at t = 4 s is beyond the limit max_abs_voltage_V = 1")
    assert VoltageLimit(1.0).update({"time_s": np.array([1.0, 2.0]), "voltage_V": np.array([np.nan, 0.5])}) is None
    # nor does it stop the charge being counted: the charge limit still trips after it
    monitor = SafetyMonitor(RunLimits(max_charge_C=0.25))
    assert monitor.check({"time_s": np.array([1.0, 2.0]), "current_A": np.array([0.1, np.nan])}) is None
    message = monitor.check({"time_s": np.array([3.0, 4.0]), "current_A": np.array([0.1, 0.1])})
    assert message == "charge passed 0.3 C at t = 4 s is beyond the limit max_charge_C = 0.25" and monitor.charge_C == pytest.approx(0.3)
