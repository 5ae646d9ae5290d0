"""`harness compare --executor ray`: on a Ray cluster this test starts on 127.0.0.1 (`ray start
--head`, 2 CPUs), the bundled SmolLM2 GGUF on llama.cpp, the demo set, --limit 2. The grid is
base + tuned (an adapter whose weights file is garbage, so that cell fails inside its Ray task)
+ the human reference row. Checked against the in-process executor: the same cells done, the
same greedy texts in every sample; the failing cell failed with its reason while the others
finish; a Ray run killed after its first cell, resumed with --resume, reruns only what is
missing; a dead --address is one error line within 30 s with no cell marked done; Ray's
processes talk over 127.0.0.1 only."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from _cli import run_cli

from harness.paths import ROOT

pytest.importorskip("ray")

ARGS = ["compare", "--models", "smollm2-135m-instruct", "--backends", "llama-cpp", "--limit",
        "2", "--data", "demo", "--gen-kwargs", "max_gen_toks=16", "--merged-quant", "none"]
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    return addr.is_loopback


class Connections:
    """Every inet socket (listening or connected) of a set of processes, polled in a thread
    while they run: Ray's daemons and workers are C++/Python processes of their own, which a
    socket patch in this process would not see."""

    def __init__(self, pids):
        self.pids = pids            # callable -> the pids to look at now
        self.seen: set = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for pid in self.pids():
                try:
                    p = psutil.Process(pid)
                    for c in p.net_connections(kind="inet"):
                        self.seen.add((p.name(), c.status, c.laddr.ip,
                                       c.raddr.ip if c.raddr else None))
                except (psutil.Error, OSError):
                    pass
            self._stop.wait(0.5)

    def stop(self) -> set:
        self._stop.set()
        self._thread.join()
        return self.seen


def _group(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster on 127.0.0.1 in its own process group, ended by its id."""
    import secrets

    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray15-", dir="/tmp")   # short: Ray's unix socket paths
    token = Path(temp) / "token"
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}  # Ray's token auth
    env = {**os.environ, **RAY_ENV, **auth}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         "--port", str(port), "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
         "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    watch = Connections(lambda: _group(proc.pid))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "ray start exited"
            time.sleep(0.5)
    else:
        pytest.fail("the Ray head did not come up in 60 s")
    yield {"address": f"127.0.0.1:{port}", "watch": watch, "env": auth}
    watch.stop()
    proc.terminate()                    # `ray start --block` stops what it started
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for pid in _group(proc.pid):        # whatever of the group is left, by its id
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    import shutil
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def env(tmp_path):
    """HARNESS_ADAPTERS_DIR with one tuned adapter for SmolLM2 whose weights file is not
    safetensors: preflight reads its config and lets it through; its cell fails when the
    llama.cpp LoRA export reads the weights, inside the cell (in the Ray task)."""
    ad = tmp_path / "adapters" / "broken"
    ad.mkdir(parents=True)
    (ad / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": "smollm2-135m-instruct", "r": 4,
         "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}))
    (ad / "training.json").write_text(json.dumps(
        {"base_model": "smollm2-135m-instruct", "task": "product_review"}))
    (ad / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    e = {**os.environ, **RAY_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
         "HARNESS_ADAPTERS_DIR": str(tmp_path / "adapters")}
    return e


def _cells(run: Path) -> dict:
    return {(c["variant"], c["backend"]): c for c in
            json.loads((run / "run.json").read_text())["cells"]}


def _texts(run: Path, key: str) -> list:
    path = run / "cells" / key / "samples_product_review.jsonl"
    return [(s["doc_id"], s["resps"], s["filtered_resps"]) for s in
            map(json.loads, path.read_text().splitlines())]


def test_ray_executor_matches_in_process_fails_one_cell_and_resumes(tmp_path, env, cluster):
    local, ray_run = tmp_path / "local", tmp_path / "ray"
    env = {**env, **cluster["env"]}
    r = run_cli([*ARGS, "--threads", "1", "--output", str(local)], env, timeout=600)
    assert r.returncode == 1, r.stderr[-3000:]        # 1: a cell failed, the rest finished

    # the Ray run, killed as soon as its first cell is written
    cmd = [sys.executable, "-m", "harness.cli", *ARGS, "--executor", "ray", "--address",
           cluster["address"], "--output", str(ray_run)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first, deadline = None, time.time() + 300
    while first is None and time.time() < deadline and proc.poll() is None:
        done = sorted((ray_run / "cells").glob("*/results.json")) \
            if (ray_run / "cells").is_dir() else []
        first = done[0] if done else None
        time.sleep(0.2)
    assert first is not None, "no cell finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _cells(ray_run)
    assert json.loads((ray_run / "run.json").read_text())["status"] == "running"
    assert [c["status"] for c in killed.values()].count("done") < 3
    mtime = first.stat().st_mtime_ns

    r = run_cli([*ARGS, "--executor", "ray", "--address", cluster["address"], "--resume",
                 "--output", str(ray_run)], env, timeout=600)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "failed: smollm2-135m-instruct · tuned (broken) · llama-cpp" in r.stderr
    assert first.stat().st_mtime_ns == mtime, "a finished cell was rerun"

    a, b = _cells(local), _cells(ray_run)
    assert set(a) == set(b) == {("base", "llama-cpp"), ("tuned", "llama-cpp"), ("human", "-")}
    state = json.loads((ray_run / "run.json").read_text())
    assert state["status"] == "finished" and state["executor"]["name"] == "ray"
    # only the cells missing at the kill ran again; the one written before is "cached"
    assert b[next(k for k, c in b.items() if c["key"] == first.parent.name)]["status"] == \
        "cached"
    for k in a:
        assert a[k]["key"] == b[k]["key"], k                          # same cache keys
    for k in (("base", "llama-cpp"), ("human", "-")):
        assert a[k]["status"] == "done" and b[k]["status"] in ("done", "cached"), k
        assert _texts(local, a[k]["key"]) == _texts(ray_run, b[k]["key"]), k
    bad = ("tuned", "llama-cpp")
    assert a[bad]["status"] == b[bad]["status"] == "failed"
    assert "adapter_model.safetensors: cannot read" in b[bad]["reason"]
    assert b[bad]["reason"] == a[bad]["reason"]
    # the report (rendered by compare from the saved files, as `harness report` does)
    assert "smollm2-135m-instruct" in (ray_run / "report.md").read_text()

    seen = cluster["watch"].seen
    assert seen, "no Ray socket was seen"
    outside = {s for s in seen if not _loopback(s[2]) or (s[3] and not _loopback(s[3]))}
    assert not outside, outside


@pytest.mark.parametrize("listening", [False, True], ids=["refused", "not-ray"])
def test_dead_address_is_one_error_line_and_no_cell_done(tmp_path, env, listening):
    """Nothing on the port (connection refused), or a port that accepts connections but is no
    Ray GCS (where ray.init alone would retry for minutes)."""
    out = tmp_path / "run"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        if listening:
            server.listen(8)        # the kernel accepts; nobody answers
        else:
            server.close()
        t0 = time.time()
        r = run_cli([*ARGS, "--executor", "ray", "--address", f"127.0.0.1:{port}",
                     "--output", str(out)], env, timeout=120)
        took = time.time() - t0
    assert took < 30, took
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    why = "not a Ray cluster that answers (no Ray GCS answered within 15 s)" if listening \
        else "no Ray cluster answers there"
    assert len(lines) == 1 and f"--address 127.0.0.1:{port}: {why}" in lines[0], r.stderr
    assert not (out / "run.json").exists() and not (out / "cells").exists()


def test_local_ray_instance_runs_a_cell_on_loopback(tmp_path, env):
    """Without --address the harness starts a local Ray (all cores), bound to 127.0.0.1. Only
    the reference row runs (the 7B model is unavailable here), so it is one short task."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness.cli", "compare", "--models", "llama2-7b-chat",
           "--backends", "llama-cpp", "--limit", "2", "--data", "demo", "--executor", "ray",
           "--output", str(out)]
    proc = subprocess.Popen(cmd, env={k: v for k, v in env.items()
                                      if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"},
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = Connections(lambda: [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(
        recursive=True)] if proc.poll() is None else [])
    _, err = proc.communicate(timeout=600)
    seen = watch.stop()
    assert proc.returncode == 0, err[-3000:]
    cells = _cells(out)
    assert cells[("human", "-")]["status"] == "done"
    assert cells[("base", "llama-cpp")]["status"] == "unavailable"
    state = json.loads((out / "run.json").read_text())
    assert state["executor"]["address"] is None and "node:127.0.0.1" in \
        state["executor"]["cluster_resources"]
    assert seen and all(_loopback(s[2]) and (not s[3] or _loopback(s[3])) for s in seen), seen


def test_task_resources_and_executor_options():
    """Resources per backend (--threads asks llama.cpp cells for that many CPUs; --ray-resources
    over both), and the bad spellings as one HarnessError each, before anything runs."""
    from harness.compare.plan import CompareConfig
    from harness.compare.executors import (EXECUTORS, check_executor, parse_ray_resources,
                                           ray_resources)
    from harness.errors import HarnessError

    assert set(EXECUTORS) == {"in-process", "ray"}
    cfg = CompareConfig(n_threads=2, ray_resources=parse_ray_resources(
        ["hf:num_gpus=1,num_cpus=4", "vllm:num_gpus=0.5"]))
    assert ray_resources(cfg, "llama-cpp") == {"num_cpus": 2}
    assert ray_resources(cfg, "hf") == {"num_cpus": 4, "num_gpus": 1}
    assert ray_resources(cfg, "vllm") == {"num_cpus": 1, "num_gpus": 0.5}
    assert ray_resources(cfg, "-") == {"num_cpus": 1}
    for bad in ("hf", "tpu:num_cpus=1", "hf:num_cpus=-1", "hf:memory=3", "hf:num_gpus=x"):
        with pytest.raises(HarnessError, match="--ray-resources"):
            parse_ray_resources([bad])
    with pytest.raises(HarnessError, match="--executor 'dask': choose from in-process, ray"):
        check_executor(CompareConfig(executor="dask"))
    with pytest.raises(HarnessError, match="--address is for --executor ray"):
        check_executor(CompareConfig(address="127.0.0.1:6379"))
    with pytest.raises(HarnessError, match="expected HOST:PORT"):
        check_executor(CompareConfig(executor="ray", address="somewhere"))
