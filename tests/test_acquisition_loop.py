"""The acquisition loop: one thread reading every polled acquisition of a process, at real-time pacing."""

import threading
import time

import numpy as np
import pytest

from echemd.config import SimulatedPotentiostatConfig, SymmetricCellConfig
from echemd.daemon.acquisition_loop import CHECK_S, AcquisitionLoop
from echemd.drivers import DriverError
from echemd.drivers.base import PolledAcquisition
from echemd.drivers.simulated import SimulatedPotentiostat

LIMITS = {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}
CURRENT_A = -1.57e-5  # 0.5 mA/cm2 on a 2 mm disc


def potentiostat(name="p", clock=1.0) -> SimulatedPotentiostat:
    instrument = SimulatedPotentiostat(SimulatedPotentiostatConfig(name=name, driver="simulated-potentiostat", limits=LIMITS, clock=clock,
                                                                   cell=SymmetricCellConfig()))
    instrument.open()
    return instrument


@pytest.fixture
def loop():
    loop = AcquisitionLoop()
    yield loop
    loop.close()


def joined(blocks):
    return {name: np.concatenate([block.columns[name] for block in blocks]) for name in blocks[0].columns}


def test_the_loop_hands_out_the_samples_an_acquisition_of_its_own_thread_gets(loop):
    """1 kHz in real time for 0.3 s: the same samples, in blocks of about a poll period, and the
    output off once the acquisition has ended."""
    on_thread, on_loop = potentiostat(), potentiostat()
    own = list(on_thread.galvanostatic(CURRENT_A, 0.3, 1e-3))
    polled, taken_on = [], set()

    def take(block):
        polled.append(block)
        taken_on.add(threading.current_thread().name)
        return True

    acquisition = on_loop.galvanostatic(CURRENT_A, 0.3, 1e-3)
    assert isinstance(acquisition, PolledAcquisition)
    loop.drive(acquisition, take)
    assert on_loop.output_on is False and taken_on == {"echemd-acquisition"}
    mine, its = joined(own), joined(polled)
    assert len(its["time_s"]) == 300
    np.testing.assert_allclose(np.diff(its["time_s"]), 1e-3, rtol=1e-6)  # (each instrument's clock starts where it was opened)
    np.testing.assert_array_equal(its["voltage_V"], mine["voltage_V"])
    sizes = [len(block) for block in polled]
    assert 10 <= np.median(sizes) <= 25 and max(sizes) <= 250  # about a poll period a block (10 ms; at most the simulator's 0.25 s)


def test_channels_fall_into_step_and_are_read_in_one_pass(loop):
    """16 channels at 1 kHz started 0-10 ms apart: after their first blocks, the loop reads them
    all in the same pass, about once per poll period, instead of waking for each of their blocks."""
    instruments = [potentiostat(f"p{k}") for k in range(16)]
    reads: list[tuple[float, int]] = []
    lock = threading.Lock()

    def channel(k, instrument):
        def take(block):
            with lock:
                reads.append((time.monotonic(), k))
            return True

        acquisition = instrument.galvanostatic(CURRENT_A, 0.5, 1e-3)
        try:
            loop.drive(acquisition, take)
        finally:
            acquisition.close()

    threads = []
    for k, instrument in enumerate(instruments):
        threads.append(threading.Thread(target=channel, args=(k, instrument)))
        threads[-1].start()
        time.sleep(0.0006)
    for thread in threads:
        thread.join(10)
    assert all(instrument._time_s >= 0.5 for instrument in instruments)
    times = np.array(sorted(t for t, _ in reads))
    settled = times[times > times[0] + 0.1]  # after the first 100 ms
    passes = 1 + np.count_nonzero(np.diff(settled) > 0.00025)  # (the channels were started 0.6 ms apart)
    assert len(settled) >= 16 * 10 and passes <= len(settled) / 8, (len(settled), passes)


def test_an_instruments_error_ends_only_its_own_acquisition(loop):
    """A read that fails raises on the caller's thread; the loop goes on reading the others."""
    failing, healthy = potentiostat("failing"), potentiostat("healthy")
    blocks = []

    def lost(times_s):
        raise DriverError("failing: no answer within 2 s")

    def fail_after_two(block):
        blocks.append(block)
        if len(blocks) == 2:
            failing._advance = lost  # the instrument stops answering: its next read fails
        return True

    other = []
    healthy_thread = threading.Thread(target=lambda: loop.drive(healthy.galvanostatic(CURRENT_A, 0.3, 1e-3), lambda b: other.append(b) or True))
    healthy_thread.start()
    acquisition = failing.galvanostatic(CURRENT_A, 10.0, 1e-3)
    with pytest.raises(DriverError, match="no answer"):
        try:
            loop.drive(acquisition, fail_after_two)
        finally:
            acquisition.close()
    healthy_thread.join(5)
    assert len(blocks) == 2 and failing.output_on is False
    assert sum(len(block) for block in other) == 300


def test_take_ends_an_acquisition_and_its_errors_reach_the_caller(loop):
    instrument = potentiostat(clock="max")
    seen = []
    loop.drive(instrument.galvanostatic(CURRENT_A, 3600.0, 1.0), lambda block: seen.append(len(block)) or len(seen) < 3)
    assert len(seen) == 3

    class Limit(Exception):
        pass

    def refuse(block):
        raise Limit("beyond the limit")

    with pytest.raises(Limit, match="beyond the limit"):
        loop.drive(instrument.galvanostatic(CURRENT_A, 3600.0, 1.0), refuse)


def test_an_interrupted_acquisition_ends_within_check_s_however_far_off_its_next_sample(loop):
    """The only channel, sampled every 3 s in real time, interrupted 0.3 s in: drive returns within
    CHECK_S (the loop passes at least that often, asking every run), not at the next sample 2.7 s
    later; the samples acquired by then (none) are read once more, the output is off."""
    slow = potentiostat("slow")
    stop_at = time.monotonic() + 0.3
    slow_blocks = []
    acquisition = slow.galvanostatic(CURRENT_A, 30.0, 3.0)
    try:
        loop.drive(acquisition, lambda block: slow_blocks.append(block) or True, interrupted=lambda: time.monotonic() >= stop_at)
    finally:
        acquisition.close()
    assert time.monotonic() - stop_at < CHECK_S + 0.3 and slow_blocks == [] and slow.output_on is False


def test_a_closed_loop_ends_its_thread_and_takes_nothing_more():
    loop = AcquisitionLoop()
    loop.drive(potentiostat(clock="max").galvanostatic(CURRENT_A, 10.0, 1.0), lambda block: True)
    thread = loop._thread
    loop.close()
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        loop.drive(potentiostat(clock="max").galvanostatic(CURRENT_A, 10.0, 1.0), lambda block: True)
