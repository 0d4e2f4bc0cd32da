"""The engine that drives plans: time base, safety limits, aborts, and the output always off after."""

import numpy as np
import pytest

from echemd.config import InstrumentLimits, load_default_config
from echemd.daemon.engine import Controls, Engine, RunAborted, RunFailed
from echemd.daemon.run_events import HoldChanged, Note, Samples, StepStarted
from echemd.drivers.registry import open_instrument
from echemd.protocols import CCD


@pytest.fixture
def pstat():
    return open_instrument(load_default_config().instrument("sim-pstat-1"))


def engine_for(instrument, **kwargs):
    """An engine whose events are kept: the blocks' columns, and (time, kind, message) of each step and note."""
    recorded, notes = [], []

    def emit(event):
        if isinstance(event, Samples):
            recorded.append(event.columns)
        elif isinstance(event, (Note, StepStarted)):
            notes.append((event.time_s, event.kind if isinstance(event, Note) else "step", event.message if isinstance(event, Note) else event.label))
        else:
            assert isinstance(event, HoldChanged)

    return Engine(instrument, emit, **kwargs), recorded, notes


def test_blocks_are_in_run_time_and_contiguous_across_runs(pstat):
    for _ in range(2):
        engine, recorded, notes = engine_for(pstat)
        result = engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0, max_plating_mA_cm2=0.5)))  # below the cell's critical current
        t = np.concatenate([block["time_s"] for block in recorded])
        assert t[0] == 1.0 and np.all(np.diff(t) == 1.0)  # every run starts at its own zero
        assert result["stopped_by"] == "max_current"
        assert [kind for _, kind, _ in notes][:2] == ["step", "step"]
        assert pstat.output_on is False


def test_a_sample_beyond_the_instruments_limits_fails_the_run_with_the_output_off(pstat):
    engine, recorded, notes = engine_for(pstat, limits=InstrumentLimits(max_abs_voltage_V=0.05, max_abs_current_A=0.1))
    with pytest.raises(RunFailed, match=r"voltage_V = -0\.0\d+ at t = 1 s is beyond the limit max_abs_voltage_V = 0.05"):
        engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0)))
    assert notes[-1][1] == "limit" and pstat.output_on is False
    assert sum(len(block["time_s"]) for block in recorded) > 0  # what was measured was recorded first


def test_an_abort_ends_the_run_between_blocks(pstat):
    blocks, control = [], Controls()

    def emit(event):
        if isinstance(event, Samples):
            blocks.append(event)
            if len(blocks) == 3:
                control.abort_requested.set()

    engine = Engine(pstat, emit, control=control)
    with pytest.raises(RunAborted):
        engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0)))
    assert len(blocks) == 3 and pstat.output_on is False


@pytest.mark.parametrize(("limits", "message"), [
    (dict(max_charge_C=0.02), r"charge passed 0.02\d+ C at t = \d+ s is beyond the limit max_charge_C = 0.02"),
    (dict(max_duration_s=1000.0), r"run time 10\d\d s is beyond the limit max_duration_s = 1000"),
])
def test_run_limits_on_charge_and_duration(pstat, limits, message):
    engine, recorded, notes = engine_for(pstat, limits=InstrumentLimits(max_abs_voltage_V=5.0, max_abs_current_A=0.1, **limits))
    with pytest.raises(RunFailed, match=message):
        engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0)))
    assert pstat.output_on is False and notes[-1][1] == "limit"


def test_engines_record_a_block_only_while_holding_their_turn(pstat):
    import threading
    import time

    turn = threading.Lock()
    engine, recorded, notes = engine_for(pstat, turn=turn)
    turn.acquire()  # another channel is processing its block
    runner = threading.Thread(target=engine.run, args=(CCD.plan(CCD.parameters(diameter_mm=2.0, max_plating_mA_cm2=0.5)),))
    runner.start()
    time.sleep(0.2)
    assert recorded == [] and runner.is_alive()  # the first block waits for its turn
    turn.release()
    runner.join(30)
    assert not runner.is_alive() and sum(len(block["time_s"]) for block in recorded) > 1000
    assert pstat.output_on is False and not turn.locked()
