"""What a daemon does at start with what the previous one left in the data folder.

Only a dead daemon's files can still say ``running`` when a daemon starts (the folder lock keeps a
second daemon out), so every such file is a run the previous daemon did not end.  Recovery makes
it a closed file (see runfile.recover): status ``interrupted``, or the end its submission record
holds when a full disk kept the file from saying it.  Recovery copies each file (about 1 s per GB),
so the daemon binds and serves first and recovers in the background; meanwhile those runs are
reported as ``recovering``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from echemd.daemon.file_transitions import clean_folder
from echemd.daemon.vocabulary import FINAL_STATUSES, RunStatus
from echemd.daemon.runfile import RunFileSettings, recover
from echemd.daemon.runfile_reader import read_attrs
from echemd.daemon.submissions import Submissions

log = logging.getLogger(__name__)


def left_running(data_dir: Path, submissions: Submissions) -> list[Path]:
    """The run files a previous daemon left open, after removing the partial files of interrupted
    transitions and completing pending replacements (file_transitions.clean_folder).  The
    submission records of runs whose file is complete are dropped: the file is their record."""
    clean_folder(data_dir)
    running = []
    for path in sorted(data_dir.glob("*.h5")):
        try:
            status = read_attrs(path)["status"]
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            log.error("cannot read %s: %s", path, exc)
            continue
        if status == RunStatus.RUNNING:
            running.append(path)
        else:
            submissions.remove(path.stem)
    return running


def recover_file(path: Path, submissions: Submissions, files: RunFileSettings) -> None:
    """Close one file a previous daemon left open (see the module's docstring); logs a failure
    (the file stays readable with ``swmr=True`` and is tried again at the next start)."""
    ended = submissions.get(path.stem)
    end = (ended.status, ended.error, ended.finished) if ended is not None and ended.status in FINAL_STATUSES else ()
    try:
        samples = recover(path, files.compress_on_close, *end, reserve_bytes=files.reserve_bytes)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        log.error("cannot recover %s: %s", path, exc)
        return
    log.warning("run %s was interrupted by the end of the previous daemon; %d samples kept", path.stem, samples)
    submissions.remove(path.stem)


def recover_interrupted(data_dir: Path, submissions: Submissions, files: RunFileSettings = RunFileSettings()) -> list[str]:
    """Recover every file a previous daemon left open, now; returns their run ids."""
    running = left_running(data_dir, submissions)
    for path in running:
        recover_file(path, submissions, files)
    return [path.stem for path in running]
