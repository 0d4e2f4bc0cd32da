import math

import pytest

from echemd.config import ConfigError, load_config, load_default_config


def test_default_config_is_the_simulated_lab():
    config = load_default_config()
    names = [instrument.name for instrument in config.instruments]
    assert names == ["sim-pstat-1", "sim-pstat-2", "sim-smu-1"]
    assert [i.driver for i in config.instruments] == ["simulated-potentiostat", "simulated-potentiostat", "simulated-sourcemeter"]
    pstat = config.instrument("sim-pstat-1")
    assert pstat.cell.area_cm2 == pytest.approx(math.pi * 0.1**2, rel=1e-5)  # 2 mm diameter disc
    assert pstat.clock == "max"
    assert config.instrument("sim-smu-1").limits.max_abs_voltage_V == 10.0
    assert config.control_endpoint.startswith("tcp://127.0.0.1:")
    assert config.flush_interval_s <= 1.0


def write(tmp_path, text):
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


BASE = """
[[instruments]]
name = "pstat"
driver = "simulated-potentiostat"
limits = { max_abs_voltage_V = 5.0, max_abs_current_A = 0.1 }
"""


def test_minimal_file_loads_with_defaults(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert config.instruments[0].cell.preset == "Li6PS5Cl-flat"
    assert config.instruments[0].cell.critical_current_mA_cm2 == 0.8
    assert config.flush_interval_s == 0.5


def test_misspelt_key_names_file_key_and_instrument(tmp_path):
    path = write(tmp_path, BASE + "[instruments.cell]\ncritcal_current_mA_cm2 = 1.0\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "instruments[0] (pstat).cell.critcal_current_mA_cm2" in message
    assert "unknown key" in message


def test_wrong_value_says_what_is_expected(tmp_path):
    path = write(tmp_path, BASE.replace("0.1 }", "-0.1 }"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "instruments[0] (pstat).limits.max_abs_current_A: Input should be greater than 0 (got -0.1)" in str(error.value)


def test_presets_fill_in_and_explicit_keys_win(tmp_path):
    config = load_config(write(tmp_path, BASE + '[instruments.cell]\npreset = "LLZO-bare"\nseed = 4\ncritical_current_mA_cm2 = 0.05\n'))
    cell = config.instruments[0].cell
    assert (cell.interface_asr_ohm_cm2, cell.critical_current_mA_cm2, cell.seed) == (900.0, 0.05, 4)
    with pytest.raises(ConfigError, match="unknown preset 'LLZO-gold'; known presets: Li6PS5Cl-flat"):
        load_config(write(tmp_path, BASE + '[instruments.cell]\npreset = "LLZO-gold"\n'))


def test_unknown_driver_is_rejected(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, BASE.replace("simulated-potentiostat", "gamry-9000")))
    assert "driver" in str(error.value) and "gamry-9000" in str(error.value)


def test_flush_interval_over_a_second_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"flush_interval_s: Input should be less than or equal to 1"):
        load_config(write(tmp_path, "flush_interval_s = 5\n" + BASE))


def test_duplicate_names_and_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="repeated: pstat"):
        load_config(write(tmp_path, BASE + BASE))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "instruments = [\n"))
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(("endpoint", "stored"), [
    ("TCP://127.0.0.1:5710", "tcp://127.0.0.1:5710"),  # ZeroMQ only knows lower-case transports
    ("tcp://LOCALHOST:5710", "tcp://LOCALHOST:5710"),
    ("ipc:///tmp/echemd-control", "ipc:///tmp/echemd-control"),
])
def test_local_endpoints_need_no_keys(endpoint, stored):
    base = load_default_config()
    assert base.model_validate({**base.model_dump(), "control_endpoint": endpoint}).control_endpoint == stored


@pytest.mark.parametrize("endpoint", ["TCP://0.0.0.0:5710", "tcp://192.0.2.7:5710", "tipc://{1,2}", "ws://127.0.0.1:5710"])
def test_endpoints_other_machines_can_reach_need_curve_keys_whatever_their_case(endpoint):
    base = load_default_config()
    with pytest.raises(ValueError, match="reachable from other machines"):
        base.model_validate({**base.model_dump(), "control_endpoint": endpoint})
