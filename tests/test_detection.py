import numpy as np
import pytest

from echemd.protocols.detection import VoltageDropDetector, VoltageLimit, find_voltage_drop


def plating_step(n=1440, dt=1.0, polarization=-0.120, noise=0.0, seed=0):
    """A plating step (negative polarization) with a 20 s transient towards ``polarization``."""
    t = dt * np.arange(1, n + 1)
    v = polarization * (1 - 0.5 * np.exp(-t / 20.0))
    return t, v + np.random.default_rng(seed).normal(0, noise, n)


def test_a_3_mV_drop_is_found_where_it_happens():
    t, v = plating_step()
    v[800:] += 0.003  # |V| falls by 3 mV at t = 801 s
    stop = find_voltage_drop(t, v, threshold_V=2e-3, settle_s=60, window=9)
    assert stop.reason == "voltage_drop"
    assert 801 <= stop.time_s <= 801 + 9  # within the median window
    assert stop.details["drop_mV"] == pytest.approx(3.0, abs=1e-9)


def test_a_1_mV_drop_is_not_a_short():
    t, v = plating_step()
    v[800:] += 0.001
    assert find_voltage_drop(t, v, threshold_V=2e-3) is None


@pytest.mark.parametrize("seed", range(20))
def test_no_false_positive_on_noisy_steps_without_a_short(seed):
    t, v = plating_step(n=3600, noise=0.2e-3, seed=seed)
    assert find_voltage_drop(t, v, threshold_V=2e-3, settle_s=60, window=9) is None


def test_single_sample_spikes_and_the_initial_transient_are_ignored():
    t, v = plating_step()
    v[500] += 0.010  # a 10 mV glitch towards zero
    v[:40] = -0.200 + 0.002 * np.arange(40)  # nucleation overshoot falling for 40 s, in the settle time
    assert find_voltage_drop(t, v, threshold_V=2e-3, settle_s=60, window=9) is None


def test_online_in_blocks_equals_offline():
    t, v = plating_step(noise=0.2e-3, seed=3)
    v[1000:] += np.linspace(0, 0.01, 440)  # a soft short
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
