"""`pip install echemd` without the ``daemon`` extra: a machine that only talks to a daemon.

The `echemd` command runs in a Python that can import the standard library, echemd, and what the
base dependencies of pyproject.toml install (with their own dependencies): every other import
fails as it would where the package is missing.  The client's verbs work there; the daemon's verbs
say what to install, before doing anything."""

import json
import re
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from echemd.daemon.cli import DAEMON_MODULES, DAEMON_VERBS
from helpers import pyproject

PROJECT = pyproject()["project"]

#: Runs the `echemd` command (argv[2:]) where only the modules named in argv[1] (comma-separated),
#: the standard library and echemd can be imported.
CLIENT_MACHINE = """
import importlib.abc, sys
allowed = set(sys.argv.pop(1).split(",")) | {"echemd"}

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return None
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from echemd.daemon.cli import main
sys.exit(main(sys.argv[1:]))
"""


def distributions(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install here, with everything they require in turn (no extras)."""
    found: set[str] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        found.add(name)
        todo += [Requirement(text) for text in metadata.requires(requirement.name) or []]
    return found


def import_names(dists: set[str]) -> set[str]:
    """The top-level modules the distributions ``dists`` provide, from the files each installed
    (Python 3.10's ``packages_distributions`` reads only ``top_level.txt``, which wheels built by
    newer backends, pydantic's and pyzmq's among them, do not have)."""
    return {file.parts[0] if len(file.parts) > 1 else file.name.split(".")[0]
            for dist in metadata.distributions() if canonicalize_name(dist.metadata["Name"]) in dists
            for file in dist.files or () if file.suffix in (".py", ".so", ".pyd") and not file.parts[0].startswith(".")}


BASE_MODULES = ",".join(sorted(import_names(distributions(PROJECT["dependencies"]))))


def on_client_machine(*args, timeout=60):
    return subprocess.run([sys.executable, "-c", CLIENT_MACHINE, BASE_MODULES, *args], capture_output=True, text=True, timeout=timeout)


def test_the_base_install_is_light_and_the_daemon_extra_is_what_the_daemon_verbs_check():
    base = distributions(PROJECT["dependencies"])
    assert {"numpy", "pyzmq", "rich"} <= base and not base & {"h5py", "pydantic", "scipy", "pandas", "matplotlib"}
    daemon_extra = PROJECT["optional-dependencies"]["daemon"]
    for text in daemon_extra:  # each package of the extra is one the daemon verbs look for, and no other
        assert import_names({canonicalize_name(Requirement(text).name)}) & set(DAEMON_MODULES), text
    assert set(DAEMON_MODULES) <= import_names({canonicalize_name(Requirement(text).name) for text in daemon_extra})
    for extra in ("test", "tiled", "gamry"):  # (what needs the daemon brings it)
        assert "echemd[daemon]" in PROJECT["optional-dependencies"][extra]


def test_the_client_verbs_work_with_the_base_install_alone(daemon, tmp_path):
    control = daemon.control.endpoint
    assert on_client_machine("--help").returncode == 0
    done = on_client_machine("run", "--params", "ccd-li6ps5cl", "--instrument", "sim-pstat-1", "-m", "sample=LPSCl-07", "--wait",
                             "--endpoint", control)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[0]
    assert "completed" in done.stdout.splitlines()[0] and re.search(r"result: CCD = \d", done.stdout)  # (the summary, from the daemon)
    table = on_client_machine("runs", "--sample", "LPSCl-07", "--endpoint", control).stdout.splitlines()
    assert len(table) == 2 and table[1].startswith(run_id) and "ccd_mA_cm2=" in table[1]
    assert json.loads(on_client_machine("status", run_id, "--json", "--endpoint", control).stdout)["status"] == "completed"
    watched = on_client_machine("watch", "--once", "--endpoint", control)
    assert watched.returncode == 0 and "sim-pstat-1" in watched.stdout
    assert on_client_machine("keys", "lab-pc", "--dir", str(tmp_path)).returncode == 0
    assert (tmp_path / "lab-pc.key").exists() and (tmp_path / "lab-pc.key_secret").exists()


def test_the_daemon_verbs_say_what_to_install_before_doing_anything(tmp_path):
    table = tmp_path / "cell.csv"
    table.write_text("time_s,voltage_V,current_A\n0,0.01,1e-5\n1,0.011,1e-5\n")
    commands = {
        "serve": ["serve", "--data-dir", str(tmp_path / "served")],
        "demo": ["demo", "--data-dir", str(tmp_path / "demo")],
        "analyze": ["analyze", "ccd", str(table), "--area-cm2", "0.0314", "--threshold-mV", "2"],  # (an option only the daemon's packages define)
        "plot": ["plot", str(table), "-o", str(tmp_path / "cell.png")],
        "export": ["export", str(tmp_path / "run.h5"), "--format", "csv"],
    }
    assert set(commands) == DAEMON_VERBS
    for verb, args in commands.items():
        done = on_client_machine(*args)
        assert done.returncode == 2, (verb, done.stderr)
        assert done.stderr.startswith(f"echemd {verb} needs the daemon's packages") and 'pip install "echemd[daemon]"' in done.stderr
        assert "h5py" in done.stderr and "pydantic" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.csv"]
    assert on_client_machine("status", "--bogus").returncode == 2  # (an unknown option of a client verb is still one)
