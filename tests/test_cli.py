"""The `echemd` command as a user runs it: separate processes, real sockets, exit codes."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import pytest

from echemd.daemon.client import Client
from helpers import until

ECHEMD = [sys.executable, "-m", "echemd.daemon.cli"]
#: `echemd` as a terminal's Ctrl-C finds it: SIGINT at its default, whatever the test runner inherited
#: (a suite started in the background by a non-interactive shell ignores SIGINT, and so would its children).
ECHEMD_AT_A_TERMINAL = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                        "from echemd.daemon.cli import main; sys.exit(main())"]


def echemd(*args, cwd=None, timeout=120):
    return subprocess.run([*ECHEMD, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def served(tmp_path):
    """`echemd serve` in its own process on ipc endpoints in tmp_path; yields (process, control URL, data dir)."""

    def start(*extra):
        control, publish = f"ipc://{tmp_path}/control", f"ipc://{tmp_path}/publish"
        process = subprocess.Popen(
            [*ECHEMD, "serve", "--control", control, "--publish", publish, "--data-dir", str(tmp_path / "runs"), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started.append(process)
        with Client(control, timeout_s=0.5) as client:
            for _ in range(60):
                try:
                    client.ping()
                    break
                except TimeoutError:
                    assert process.poll() is None, f"echemd serve exited: {process.communicate()[1]}"
        return process, control, tmp_path / "runs"

    started = []
    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_run_wait_json_prints_the_final_record(served):
    _, control, data_dir = served()
    done = echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm=2", "-p", "max_plating_mA_cm2=2.5",
                  "--wait", "--json", "--endpoint", control)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record) == {"run_id", "status", "file", "result"}
    assert record["status"] == "completed" and record["result"]["ccd_mA_cm2"] == 1.0  # the flat cell: ~1 mA/cm2, as in the paper
    assert os.path.dirname(record["file"]) == str(data_dir)
    status = json.loads(echemd("status", record["run_id"], "--json", "--endpoint", control).stdout)
    assert status["n_samples"] > 1000
    assert record["run_id"] in echemd("runs", "--endpoint", control).stdout


def test_serve_on_an_endpoint_in_use_exits_2_at_once_instead_of_hanging(tmp_path):
    import zmq

    holder = zmq.Context.instance().socket(zmq.ROUTER)
    port = holder.bind_to_random_port("tcp://127.0.0.1")
    try:
        for control, publish in ((f"tcp://127.0.0.1:{port}", "tcp://127.0.0.1:*"), ("tcp://127.0.0.1:*", f"tcp://127.0.0.1:{port}")):
            started = time.monotonic()
            done = echemd("serve", "--control", control, "--publish", publish, "--data-dir", str(tmp_path / "runs"), timeout=30)
            assert done.returncode == 2 and "cannot bind the control or data endpoint" in done.stderr and "Traceback" not in done.stderr
            assert time.monotonic() - started < 15  # it used to hang in Context.term() with the unbound socket open
    finally:
        holder.close(linger=0)


def test_serve_on_an_ipc_endpoint_another_daemon_serves_exits_2_instead_of_taking_it_over(served, tmp_path):
    process, control, _ = served()
    done = echemd("serve", "--control", control, "--publish", f"ipc://{tmp_path}/other-publish", "--data-dir", str(tmp_path / "other"),
                  timeout=30)
    assert done.returncode == 2 and "another process serves it" in done.stderr
    with Client(control, timeout_s=5) as client:
        assert client.ping()  # the first daemon still answers on its endpoint


def test_bad_input_exits_2_with_the_reason_on_stderr(served):
    _, control, _ = served()
    done = echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm=-2", "--wait", "--json", "--endpoint", control)
    assert done.returncode == 2 and done.stdout == ""
    assert "invalid_parameters" in done.stderr and "diameter_mm" in done.stderr
    done = echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm", "--endpoint", control)
    assert done.returncode == 2 and "expected KEY=VALUE" in done.stderr


def test_a_bad_config_fails_at_start_naming_file_and_key(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text('data_dir = 5\n[[instruments]]\nname = "x"\ndriver = "simulated-potentiostat"\n')
    done = echemd("serve", "--config", str(config))
    assert done.returncode == 2
    assert str(config) in done.stderr and "data_dir" in done.stderr and "instruments[0] (x).limits: required key is missing" in done.stderr


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "shutdown request"])
def test_stopping_serve_stops_runs_safely_and_exits_0(served, stop):
    process, control, data_dir = served("--sim-speed", "100")
    with Client(control) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        while client.status(run_id)["n_samples"] < 5:
            time.sleep(0.05)
        if stop == "shutdown request":
            client.call("shutdown")
        else:
            process.send_signal(getattr(signal, stop))
    assert process.wait(timeout=20) == 0
    with h5py.File(data_dir / f"{run_id}.h5", "r") as f:
        assert f.attrs["status"] == "aborted" and len(f["data/voltage_V"]) >= 5


def test_demo_prints_the_ccd_results_and_writes_run_files(tmp_path):
    done = echemd("demo", "--data-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    flat = lines.index("CCD, flat interface (sim-pstat-1): completed")
    assert lines[flat + 1].strip().startswith("CCD = 1.0 mA/cm2 (last passed 0.5 mA/cm2)")
    assert "EIS, contoured interface (sim-pstat-2): completed" in lines and "Kramers-Kronig residual" in done.stdout
    assert "c-AFM sweeps, tip on a grain boundary (sim-smu-1): completed" in lines and "triggering bias per sweep: -0.1" in done.stdout
    assert len(list((tmp_path / "out").glob("*.h5"))) == 4 and len(list((tmp_path / "out").glob("*.png"))) == 4


def test_client_verbs_without_a_daemon_fail_clearly_and_at_once(tmp_path):
    started = time.monotonic()
    done = echemd("status", "--endpoint", f"ipc://{tmp_path}/nobody", timeout=60)  # the default --timeout is 10 s
    assert done.returncode == 1 and "is `echemd serve` running there?" in done.stderr
    assert time.monotonic() - started < 6  # the 2 s ping plus starting Python, not 10 s
    done = echemd("runs", "--endpoint", "no-such-transport://x")
    assert done.returncode == 2 and "bad endpoint 'no-such-transport://x'" in done.stderr and "Traceback" not in done.stderr


def test_files_and_folders_that_cannot_be_used_exit_2_with_the_reason(tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    done = echemd("serve", "--data-dir", not_a_folder, "--control", f"ipc://{tmp_path}/c", "--publish", f"ipc://{tmp_path}/p", timeout=60)
    assert done.returncode == 2 and f"data folder {not_a_folder}" in done.stderr and "Traceback" not in done.stderr
    done = echemd("plot", not_a_folder, "-o", tmp_path / "missing" / "x.png")
    assert done.returncode == 2 and f"the folder {tmp_path / 'missing'} does not exist" in done.stderr
    done = echemd("export", not_a_folder, "--format", "csv", "-o", tmp_path / "missing" / "x.csv")
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert echemd("keys", "lab", "--dir", tmp_path / "keys").returncode == 0
    secret = (tmp_path / "keys" / "lab.key_secret").read_bytes()
    done = echemd("keys", "lab", "--dir", tmp_path / "keys")
    assert done.returncode == 2 and "exists" in done.stderr and "--force" in done.stderr
    assert (tmp_path / "keys" / "lab.key_secret").read_bytes() == secret  # untouched
    assert echemd("keys", "lab", "--dir", tmp_path / "keys", "--force").returncode == 0
    assert (tmp_path / "keys" / "lab.key_secret").read_bytes() != secret


def test_a_reader_that_closes_the_pipe_early_is_not_an_error(tmp_path, monkeypatch):
    from echemd.daemon import cli

    read, write = os.pipe()
    os.close(read)  # `| head` that has already gone
    monkeypatch.setattr(sys, "stdout", os.fdopen(write, "w"))
    assert cli.main(["keys", "lab", "--dir", str(tmp_path)]) == 0


def test_readable_status_queue_verb_and_ctrl_c_while_waiting(served, tmp_path):
    _, control, _ = served("--sim-speed", "1")  # real time: runs last
    first = echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm=2", "-m", "sample=S1", "--endpoint", control).stdout.strip()
    second, third = (echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm=2", "--endpoint", control).stdout.strip()
                     for _ in range(2))
    done = echemd("queue", "sim-pstat-1", "--endpoint", control)
    assert done.returncode == 0 and done.stdout.splitlines() == [f"sim-pstat-1: running {first}; 2 queued", f"  0  {second}", f"  1  {third}"]
    moved = json.loads(echemd("queue", "sim-pstat-1", "--move", third, "--to", "0", "--json", "--endpoint", control).stdout)
    assert moved["queued"] == [third, second]
    removed = json.loads(echemd("queue", "sim-pstat-1", "--remove", second, "--json", "--endpoint", control).stdout)
    assert removed["queued"] == [third]
    done = echemd("queue", "sim-pstat-1", "--remove", first, "--endpoint", control)
    assert done.returncode == 2 and "not queued" in done.stderr
    status = echemd("status", first, "--endpoint", control).stdout.splitlines()
    assert status[0] == f"{first}  running  ccd on sim-pstat-1" and status[1].startswith("  sample S1, step: cycle 1: plate 0.5 mA/cm2")
    overview = echemd("status", "--endpoint", control).stdout.splitlines()
    assert overview[0].endswith("3 instruments, 2 active runs") and any(line.split() == ["sim-pstat-1", "running", first] for line in overview)
    waiting = subprocess.Popen([*ECHEMD_AT_A_TERMINAL, "run", "ccd", "--instrument", "sim-pstat-2", "-p", "diameter_mm=2", "--wait", "--endpoint", control],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with Client(control) as client:  # the process submitted its run and waits for it: the run has samples (real time)
        until(lambda: any(r["instrument"] == "sim-pstat-2" and r["n_samples"] > 0 for r in client.runs()))
    waiting.send_signal(signal.SIGINT)
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 130 and "goes on in the daemon" in err and "Traceback" not in err
    run_id = err.split("run ", 1)[1].split()[0]
    assert json.loads(echemd("status", run_id, "--json", "--endpoint", control).stdout)["status"] == "running"


@pytest.mark.skipif(sys.platform == "win32", reason="checks the message off Windows")
def test_selecting_gamry_off_windows_fails_at_start_with_what_is_needed(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text('[[instruments]]\nname = "g"\ndriver = "gamry"\naddress = "IFC1010-12345"\n'
                      'limits = { max_abs_voltage_V = 5.0, max_abs_current_A = 0.1 }\n')
    done = echemd("serve", "--config", str(config), "--control", f"ipc://{tmp_path}/c", "--publish", f"ipc://{tmp_path}/p")
    assert done.returncode == 2
    assert str(config) in done.stderr and "needs Windows with the Gamry Framework" in done.stderr and "comtypes" in done.stderr


def test_watch_shows_instruments_runs_and_events(served):
    process, control, _ = served("--sim-speed", "300")
    with Client(control) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        while client.status(run_id)["n_samples"] < 5:
            time.sleep(0.05)
    done = echemd("watch", "--once", "--endpoint", control)
    assert done.returncode == 0, done.stderr
    assert "sim-pstat-1" in done.stdout and "ccd running" in done.stdout and "sim-smu-1" in done.stdout and "idle" in done.stdout
    assert "mV" in done.stdout  # the latest reading from the stream


def test_watch_writes_one_line_per_event_when_its_output_is_not_a_terminal(served):
    _, control, _ = served()
    watching = subprocess.Popen([*ECHEMD_AT_A_TERMINAL, "watch", "--endpoint", control], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert " watching " in watching.stdout.readline()  # (subscribed)
        with Client(control) as client:
            run_id = client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0), timeout_s=60)["run_id"]
        lines = []
        while not any(line.endswith(f"{run_id} status: completed") for line in lines):
            lines.append(watching.stdout.readline().rstrip("\n"))
    finally:
        watching.send_signal(signal.SIGINT)
        watching.wait(timeout=10)
    mine = [line.split(" ", 2)[2] for line in lines if f" {run_id} " in line]
    seen = "\n".join(lines) + "\nstderr: " + watching.stderr.read()[-2000:]  # (what it wrote, for a failure's report)
    assert mine[0] == "status: running" and mine[-1] == "status: completed", seen
    assert any(line.startswith("short: short (") for line in mine), seen  # the default flat cell shorts in cycle 2
    assert all(": " in line for line in mine) and any(line.startswith("step: cycle 1: plate") for line in mine), seen
    assert watching.returncode == 0, seen


def test_request_verbs_pause_resume_list_and_shut_the_daemon_down(served):
    process, control, data_dir = served("--sim-speed", "1")  # real time: the run is still going when paused
    run_id = json.loads(echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm=2", "--json", "--endpoint", control).stdout)["run_id"]
    paused = echemd("pause", run_id, "--endpoint", control)
    assert paused.returncode == 0 and json.loads(paused.stdout)["hold"] == "open_circuit"
    with Client(control) as client:
        deadline = time.monotonic() + 10
        while client.status(run_id)["status"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert json.loads(echemd("resume", run_id, "--endpoint", control).stdout)["run_id"] == run_id
    instruments = json.loads(echemd("instruments", "--endpoint", control).stdout)
    assert [i["name"] for i in instruments][:2] == ["sim-pstat-1", "sim-pstat-2"] and instruments[0]["current_run"] == run_id
    ccd = json.loads(echemd("protocols", "ccd", "--endpoint", control).stdout)
    assert ccd["name"] == "ccd" and "plating_start_mA_cm2" in json.dumps(ccd)
    unknown = echemd("protocols", "cdd", "--endpoint", control)
    assert unknown.returncode == 2 and "no protocol 'cdd'" in unknown.stderr
    assert json.loads(echemd("shutdown", "--endpoint", control).stdout) == {"shutting_down": True}
    assert process.wait(timeout=30) == 0
    with h5py.File(data_dir / f"{run_id}.h5", "r") as f:
        assert f.attrs["status"] == "aborted" and f.attrs["error"] == "aborted: daemon shutdown"


def test_version():
    done = echemd("--version")
    assert done.returncode == 0 and done.stdout.startswith("echemd ")


def test_readable_results_are_the_protocols_summary_lines_also_for_runs_of_an_earlier_daemon(served):
    process, control, _ = served()
    runs = {protocol: json.loads(echemd("run", protocol, "--instrument", instrument, *params, "--wait", "--json", "--endpoint", control).stdout)["run_id"]
            for protocol, instrument, params in (("cafm-sweep", "sim-smu-1", ["-p", "cycles=2", "-p", "positive_vertex_V=1.0"]), ("eis", "sim-pstat-2", ["-p", "area_cm2=0.0314"]))}
    before = {protocol: json.loads(echemd("status", run_id, "--json", "--endpoint", control).stdout)["summary"] for protocol, run_id in runs.items()}
    assert re.fullmatch(r"triggering bias per sweep: -0\.\d+ V, -0\.\d+ V; back scan R\^2 >= 0\.9\d+; on/off ~\S+", before["cafm-sweep"])
    assert re.match(r"ASR \d+\.\d Ohm cm2 = bulk \d+\.\d \+ ", before["eis"]) and before["eis"].endswith("(valid)")
    table = echemd("runs", "--endpoint", control).stdout
    assert re.search(r"triggering_bias_V=-0\.\d+,-0\.\d+\s*$", table, re.MULTILINE)  # (a list: its numbers, not '...')
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    _, control, _ = served()  # the runs are now an earlier daemon's: read from their files
    for protocol, run_id in runs.items():
        assert json.loads(echemd("status", run_id, "--json", "--endpoint", control).stdout)["summary"] == before[protocol]
        assert f"  result: {before[protocol]}" in echemd("status", run_id, "--endpoint", control).stdout.splitlines()
