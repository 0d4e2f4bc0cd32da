"""The voltage limit and the c-AFM triggering bias (the short detector: test_shorts.py)."""

import numpy as np
import pytest

from echemd.protocols.analysis.detection import VoltageLimit, find_triggering_bias

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
