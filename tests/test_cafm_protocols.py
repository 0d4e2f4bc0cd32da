"""c-AFM protocols through the daemon on the simulated sourcemeter: sweeps and memristor cycling."""

import numpy as np
import pytest

from echemd.config import DaemonConfig
from echemd.daemon.client import Client, RemoteError
from echemd.daemon.service import Daemon


def run(tmp_path, protocol, junction, **parameters):
    config = DaemonConfig(
        control_endpoint="tcp://127.0.0.1:*", publish_endpoint="tcp://127.0.0.1:*", data_dir=tmp_path,
        instruments=[{"name": "smu", "driver": "simulated-sourcemeter", "junction": junction,
                      "limits": {"max_abs_voltage_V": 10.0, "max_abs_current_A": 1e-3}}],
    )
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit(protocol, "smu", **parameters), timeout_s=120)
    finally:
        daemon.close()
    assert record["status"] == "completed", record["error"]
    return record["result"]


def test_cafm_sweeps_recover_the_triggering_bias_and_an_ohmic_back_scan(tmp_path):
    result = run(tmp_path, "cafm-sweep", {"preset": "LLZO-tip", "seed": 2}, cycles=3, positive_vertex_V=1.0, step_V=0.002)
    first, *later = result["triggering_bias_V"]
    assert first == pytest.approx(-0.12, abs=0.003)  # forming at the grain boundary
    assert all(-0.2 < bias < -0.1 for bias in later)  # the set bias moves towards -0.15 V (jitter 10 mV)
    assert all(r2 > 0.999 for r2 in result["ohmic_r2"]) and result["filament"] == [True, True, True]
    assert min(result["on_off"]) > 1e4


def test_deep_in_a_grain_a_filament_triggers_near_9_V_within_the_10_V_limit_and_not_at_5_V(tmp_path):
    junction = {"preset": "LLZO-tip", "tip_x_nm": 0.0, "tip_y_nm": 0.0, "tip_on_grain_boundary": False, "grain_size_nm": 5000.0}
    result = run(tmp_path, "cafm-sweep", junction, negative_vertex_V=-10.0, step_V=0.02, rate_V_s=2.0)
    (bias,) = result["triggering_bias_V"]
    assert -10.0 < bias < -9.0 and result["filament"] == [True]  # the study's interiors: below -9 V, ~80x the grain boundary's
    result = run(tmp_path / "b", "cafm-sweep", junction, negative_vertex_V=-5.0, step_V=0.02, rate_V_s=2.0)
    # no filament: the leakage grows faster than ohmic (not a surge), and the verdict says no filament
    assert result["triggering_bias_V"] == [None] and result["filament"] == [False]
    assert result["ohmic_r2"][0] < 0.99


def test_memristor_cycling_with_a_tip_over_200_cycles_at_the_studys_default_settings(tmp_path):
    result = run(tmp_path, "memristor", {"preset": "LLZO-tip", "seed": 3}, cycles=200)  # set to -0.2 V, reset to +1 V
    on_off = np.array(result["on_off"])
    assert len(on_off) == 200 and result["median_on_off"] >= 1e4 and on_off.min() >= 1e3  # it set and reset every cycle
    assert all(-0.2 <= bias < 0 for bias in result["set_bias_V"])
    assert -0.17 < np.mean(result["set_bias_V"][-50:]) < -0.13


def test_a_pad_cycles_below_10(tmp_path):
    result = run(tmp_path, "memristor", {"preset": "LLZO-pad", "seed": 3}, cycles=50)
    assert result["median_on_off"] < 10


def test_limits_are_checked_before_the_tip_is_touched(tmp_path):
    with pytest.raises(RemoteError, match="exceeds the configured limit max_abs_voltage_V = 10 V"):
        run(tmp_path, "memristor", {"preset": "LLZO-tip"}, reset_limit_V=12.0)
    with pytest.raises(RemoteError, match="read_V must lie between"):
        run(tmp_path, "memristor", {"preset": "LLZO-tip"}, read_V=2.0)
