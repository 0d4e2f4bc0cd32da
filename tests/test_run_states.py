"""The run state machine: the moves a run's status may make, and the ones it may not."""

from pathlib import Path

import pytest

from echemd.daemon.run import IllegalTransition, Run
from echemd.daemon.vocabulary import FINAL_STATUSES, RunStatus
from echemd.protocols import CCD


def new_run() -> Run:
    return Run("r1", CCD, "sim-pstat-1", CCD.parameters(diameter_mm=2.0), Path("r1.h5"))


def test_a_run_goes_queued_running_paused_running_completed():
    run = new_run()
    for status in (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.RUNNING):
        run.move_to(status)
    run.finish(RunStatus.COMPLETED, {"ccd_mA_cm2": 1.0})
    assert run.status == "completed" and run.done.is_set() and run.finished


@pytest.mark.parametrize("end", sorted(FINAL_STATUSES))
def test_nothing_leaves_an_end(end):
    run = new_run()
    run.finish(end)
    for status in RunStatus:
        if status != end:
            with pytest.raises(IllegalTransition):
                run.move_to(status)


def test_a_recovering_run_can_only_end_interrupted_and_a_run_ends_only_in_an_end():
    run = new_run()
    run.move_to(RunStatus.RUNNING)
    with pytest.raises(IllegalTransition):
        run.finish(RunStatus.PAUSED)
    run.move_to(RunStatus.RECOVERING)
    for status in (RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.ABORTED):
        with pytest.raises(IllegalTransition):
            run.move_to(status)
    run.finish(RunStatus.INTERRUPTED)
    assert run.status == "interrupted"
