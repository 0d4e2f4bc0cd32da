"""The CCD drop detector on synthetic plating steps with known truth: every hard case, false positives, delay."""

import numpy as np
import pytest

from echemd.protocols.detection import VoltageDropDetector, VoltageLimit, find_triggering_bias, find_voltage_drop

STEP_S = 1440  # 0.2 mAh/cm2 at 0.5 mA/cm2, 1 s samples


def plating_step(n=STEP_S, polarization=-0.120, noise=0.0, seed=0, overshoot=0.0, drift_V_per_h=0.0, decline_V=0.0, transient_s=20.0):
    """A plating step: current-step transient, optional nucleation overshoot, drift, gradual decline."""
    rng = np.random.default_rng(seed)
    t = np.arange(1.0, n + 1)
    v = polarization * (1 - 0.5 * np.exp(-t / transient_s))
    v -= overshoot * np.exp(-t / 15.0)  # more negative at first
    v += drift_V_per_h * t / 3600
    v -= decline_V * (t / t[-1]) * np.sign(polarization)  # |V| falls by decline_V over the step
    return t, v + rng.normal(0, noise, n)


def with_short(t, v, at_s, drop_V=0.01, collapse_s=30.0):
    v = v.copy()
    after = t >= at_s
    v[after] *= 1 - (drop_V / abs(v[after][0])) * (1 - np.exp(-(t[after] - at_s) / collapse_s))
    return v


@pytest.mark.parametrize("noise_mV", [0.1, 0.3, 0.5])
def test_a_short_is_found_soon_after_it_begins_at_every_noise_level(noise_mV):
    delays = []
    for seed in range(20):
        t, v = plating_step(noise=noise_mV * 1e-3, seed=seed)
        stop = find_voltage_drop(t, with_short(t, v, at_s=800.0))
        assert stop is not None and stop.time_s > 800
        delays.append(stop.time_s - 800)
    # a 10 mV collapse with a 30 s time constant passes 2 mV after ~7 s; the median filter adds ~7 s
    assert np.median(delays) < 25 and max(delays) < 40


@pytest.mark.parametrize("noise_mV", [0.1, 0.3, 0.5])
def test_no_false_positive_on_long_no_short_traces(noise_mV):
    false_positives = 0
    for seed in range(40):  # 40 steps of 4 h at 1 s: 576,000 samples per noise level
        t, v = plating_step(n=4 * 3600, noise=noise_mV * 1e-3, seed=seed)
        false_positives += find_voltage_drop(t, v) is not None
    assert false_positives == 0


def test_single_sample_spikes_are_ignored():
    t, v = plating_step(noise=0.2e-3)
    v[[300, 700, 1100]] += 0.010  # 10 mV glitches towards zero
    v[500] -= 0.010
    assert find_voltage_drop(t, v) is None


def test_transient_and_nucleation_overshoot_are_ignored():
    t, v = plating_step(noise=0.2e-3, overshoot=0.030, transient_s=3.0)  # a 30 mV overshoot relaxing in the first minute
    assert find_voltage_drop(t, v, settle_s=60) is None
    assert find_voltage_drop(t, v, settle_s=0) is not None  # which is what the settle time is for


@pytest.mark.parametrize("drift", [-5e-3, 5e-3])
def test_slow_drift_is_not_a_short(drift):
    t, v = plating_step(n=4 * 3600, noise=0.3e-3, drift_V_per_h=drift)  # 5 mV/h either way
    assert find_voltage_drop(t, v) is None


def test_a_gradual_polarization_decline_is_not_a_short_but_a_collapse_on_top_is():
    t, v = plating_step(n=3 * 3600, polarization=-0.32, noise=0.3e-3, decline_V=0.012)  # Li3PS4: -12 mV over 3 h
    assert find_voltage_drop(t, v) is None
    assert find_voltage_drop(t, v, drop_window_s=None) is not None  # a detector without a window would call it
    stop = find_voltage_drop(t, with_short(t, v, at_s=9000.0, drop_V=0.05))
    assert stop is not None and 9000 < stop.time_s < 9040


def test_a_1_mV_drop_is_not_a_short_and_a_3_mV_step_is_measured():
    t, v = plating_step()
    small = v.copy()
    small[800:] += 0.001
    assert find_voltage_drop(t, small) is None
    v[800:] += 0.003
    stop = find_voltage_drop(t, v)
    assert 801 <= stop.time_s <= 801 + 15 and stop.details["drop_mV"] == pytest.approx(3.0, abs=1e-9)


def test_online_in_blocks_equals_offline():
    t, v = plating_step(noise=0.2e-3, seed=3)
    v = with_short(t, v, at_s=1000.0)
    offline = find_voltage_drop(t, v)
    detector = VoltageDropDetector()
    online = None
    for start in range(0, len(t), 7):
        online = detector.update({"time_s": t[start : start + 7], "voltage_V": v[start : start + 7]})
        if online:
            break
    assert offline is not None and online == offline


def test_voltage_limit():
    t = np.arange(5.0)
    assert VoltageLimit(1.0).update({"time_s": t, "voltage_V": np.array([0.1, -0.5, -1.2, 2.0, 0.0])}).time_s == 2.0
    assert VoltageLimit(1.0).update({"time_s": t, "voltage_V": np.zeros(5)}) is None


def test_triggering_bias_is_robust_to_noise_and_compliance_clamping():
    rng = np.random.default_rng(1)
    bias = np.linspace(0, -0.5, 501)
    current = np.where(bias <= -0.12, bias / 1e3, bias / 1e10) + rng.normal(0, 1e-12, bias.size)
    clamped = np.clip(current, -1e-4, 1e-4)  # the 1 mA compliance (here 100 uA) cuts the surge short
    assert find_triggering_bias(bias, clamped) == pytest.approx(-0.12, abs=0.0011)
    assert find_triggering_bias(bias, bias / 1e10 + rng.normal(0, 1e-12, bias.size)) is None
