"""The engine that drives plans: time base, safety limits, aborts, and the output always off after."""

import threading
import time

import numpy as np
import pytest

from echemd.config import InstrumentLimits, load_default_config
from echemd.daemon.acquisition_loop import AcquisitionLoop
from echemd.daemon.engine import Controls, Engine, RunAborted, RunFailed
from echemd.daemon.run_events import HoldChanged, Note, Samples, StepStarted
from echemd.drivers.registry import open_instrument
from echemd.protocols import CCD
from echemd.protocols.base import Galvanostatic, Stop, StopCondition
from helpers import until


@pytest.fixture
def pstat():
    return open_instrument(load_default_config().instrument("sim-pstat-1"))


@pytest.fixture(params=["own thread", "acquisition loop"])
def loop(request):
    """Where the engine's polled acquisitions are read: on its own thread (None), or on a process's acquisition loop."""
    if request.param == "own thread":
        yield None
        return
    loop = AcquisitionLoop()
    yield loop
    loop.close()


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


def test_blocks_are_in_run_time_and_contiguous_across_runs(pstat, loop):
    for _ in range(2):
        engine, recorded, notes = engine_for(pstat, loop=loop)
        result = engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0, max_plating_mA_cm2=0.5)))  # below the cell's critical current
        t = np.concatenate([block["time_s"] for block in recorded])
        assert t[0] == 1.0 and np.all(np.diff(t) == 1.0)  # every run starts at its own zero
        assert result["stopped_by"] == "max_current"
        assert [kind for _, kind, _ in notes][:2] == ["step", "step"]
        assert pstat.output_on is False


def test_a_sample_beyond_the_instruments_limits_fails_the_run_with_the_output_off(pstat, loop):
    engine, recorded, notes = engine_for(pstat, limits=InstrumentLimits(max_abs_voltage_V=0.05, max_abs_current_A=0.1), loop=loop)
    with pytest.raises(RunFailed, match=r"voltage_V = -0\.0\d+ at t = 1 s is beyond the limit max_abs_voltage_V = 0.05"):
        engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0)))
    assert notes[-1][1] == "limit" and pstat.output_on is False
    assert sum(len(block["time_s"]) for block in recorded) > 0  # what was measured was recorded first


def test_an_abort_ends_the_run_between_blocks(pstat, loop):
    blocks, control = [], Controls()

    def emit(event):
        if isinstance(event, Samples):
            blocks.append(event)
            if len(blocks) == 3:
                control.abort_requested.set()

    engine = Engine(pstat, emit, control=control, loop=loop)
    with pytest.raises(RunAborted):
        engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0)))
    assert len(blocks) == 3 and pstat.output_on is False


def test_an_abort_or_a_pause_ends_a_slowly_sampled_step_without_waiting_for_its_next_sample(loop):
    """A step sampled every 3 s in real time, paused 0.3 s in and aborted while paused: the hold
    (output off) and the abort each come within CHECK_S (0.1 s; asserted: 0.5 s, for a loaded
    machine), not at the next sample (2.7 s on)."""
    pstat = open_instrument(load_default_config().instrument("sim-pstat-1"), sim_speed=1.0)
    control, seen = Controls(), {}

    def emit(event):
        if isinstance(event, HoldChanged) and event.holding:
            seen["held"] = time.monotonic()

    def plan():
        yield Galvanostatic(-1e-5, 30.0, 3.0, "plate", keep_samples=False)

    def run():
        try:
            engine.run(plan())
        except BaseException as exc:
            seen["raised"] = exc

    engine = Engine(pstat, emit, control=control, loop=loop)
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        time.sleep(0.3)
        assert pstat.output_on
        paused_at = time.monotonic()
        control.pause_requested.set()
        until(lambda: "held" in seen, timeout_s=5)
        assert seen["held"] - paused_at < 0.5 and pstat.output_on is False
    finally:
        aborted_at = time.monotonic()
        control.abort_requested.set()
        runner.join(5)
    assert not runner.is_alive() and time.monotonic() - aborted_at < 0.5 and isinstance(seen["raised"], RunAborted)
    assert engine.last_time_s == 0.0  # no sample was due yet: none was made up


@pytest.mark.parametrize(("limits", "message"), [
    (dict(max_charge_C=0.02), r"charge passed 0.02\d+ C at t = \d+ s is beyond the limit max_charge_C = 0.02"),
    (dict(max_duration_s=1000.0), r"run time 10\d\d s is beyond the limit max_duration_s = 1000"),
])
def test_run_limits_on_charge_and_duration(pstat, limits, message, loop):
    engine, recorded, notes = engine_for(pstat, limits=InstrumentLimits(max_abs_voltage_V=5.0, max_abs_current_A=0.1, **limits), loop=loop)
    with pytest.raises(RunFailed, match=message):
        engine.run(CCD.plan(CCD.parameters(diameter_mm=2.0)))
    assert pstat.output_on is False and notes[-1][1] == "limit"


def test_engines_record_a_block_only_while_holding_their_turn(pstat):
    loop = AcquisitionLoop()
    turn = loop.turn
    engine, recorded, notes = engine_for(pstat, loop=loop)
    turn.acquire()  # another channel is processing its block
    runner = threading.Thread(target=engine.run, args=(CCD.plan(CCD.parameters(diameter_mm=2.0, max_plating_mA_cm2=0.5)),))
    runner.start()
    time.sleep(0.2)
    assert recorded == [] and runner.is_alive()  # the first block waits for its turn
    turn.release()
    runner.join(30)
    assert not runner.is_alive() and sum(len(block["time_s"]) for block in recorded) > 1000
    assert pstat.output_on is False and not turn.locked()
    loop.close()


class Watcher(StopCondition):
    """Keeps the blocks it is fed; stops at the first sample at or after ``stop_at_s``."""

    def __init__(self, batch_s: float, stop_at_s: float = np.inf, reason: str = "watched") -> None:
        self.batch_s, self.stop_at_s, self.reason, self.blocks = batch_s, stop_at_s, reason, []

    def update(self, columns):
        self.blocks.append(columns["time_s"].copy())
        hit = np.flatnonzero(columns["time_s"] >= self.stop_at_s)
        return Stop(self.reason, float(columns["time_s"][hit[0]])) if hit.size else None


def run_step(instrument, *watchers):
    """One 8 s galvanostatic step sampled every 10 ms, at 20x real time (a block of ~20 samples every
    10 ms, as a polled instrument hands them over), watched by ``watchers``; (outcome, recorded times)."""
    engine, recorded, _ = engine_for(instrument)

    def plan():
        outcome = yield Galvanostatic(-1e-5, 8.0, 0.01, "hold", stops=watchers, keep_samples=False)
        return outcome

    outcome = engine.run(plan())
    return outcome, np.concatenate([block["time_s"] for block in recorded])


@pytest.fixture
def paced():
    return open_instrument(load_default_config().instrument("sim-pstat-1"), sim_speed=20.0)


def test_a_condition_that_allows_it_is_fed_held_back_samples_in_blocks_of_its_batch_span(paced):
    every, batched = Watcher(0.0), Watcher(1.0)
    outcome, recorded = run_step(paced, every, batched)
    assert outcome.stop is None and len(every.blocks) >= 30  # ~20 samples per block
    assert np.array_equal(np.concatenate(batched.blocks), recorded)  # every sample once, in order: the last ones at the step's end
    spans = np.diff([-np.inf] + [block[-1] for block in batched.blocks])[1:-1]
    assert len(batched.blocks) < 12 and np.all(spans >= 1.0)


@pytest.mark.parametrize("batch_s", [0.0, 1.0, 100.0])
def test_a_step_ends_on_the_same_stop_however_its_conditions_are_fed(paced, batch_s):
    # the held-back condition's stop (3.0 s) comes before the other one's (3.5 s): it ends the step,
    # as it does when fed every block; with a 100 s batch it is only judged when the other stops
    outcome, recorded = run_step(paced, Watcher(0.0, 3.5, "safety"), Watcher(batch_s, 3.0, "short"))
    assert (outcome.stop.reason, outcome.stop.time_s) == ("short", recorded[recorded >= 3.0][0])
    # fed every block it ends the step at once; held back, by the next batch or when the other one stops
    assert recorded[-1] < {0.0: 3.5, 1.0: 4.0, 100.0: 4.0}[batch_s] and (batch_s < 100 or recorded[-1] >= 3.5)
    # held back to the step's end: judged then, and the step ends on it
    outcome, recorded = run_step(paced, Watcher(batch_s, 7.9, "short"))
    assert (outcome.stop.reason, outcome.stop.time_s) == ("short", recorded[recorded >= 7.9][0])
