"""Who runs the cells of `harness compare`: the table EXECUTORS, name -> function.

    in-process  (default) the cells here, one after another, sharing loaded models
                (harness.compare.run_in_process)
    ray         every cell a Ray task (`--executor ray [--address HOST:PORT]`), with the
                resources of its backend (RAY_RESOURCES, `--ray-resources` over it)

Every executor is called as f(cfg, out, todo, batch, state, save, progress) after the run is
planned, keyed and checked (harness.compare.compare) and leaves each cell of `todo` done or
failed (cached ones untouched), calling save() after each so run.json follows the run.

The Ray executor: each task runs harness.compare.attempt_cell for one cell in a Ray worker,
with a ModelCache of its own (a loaded model is not shared between cells or workers: each
cell loads its model), into a scratch folder on the worker; it returns the updated cell and
the files of its folder (results.json, samples_*.jsonl, error.txt). The driver writes them into
RUN/cells/<key>/ as they finish, results.json last (each file atomically), then run.json: the
run folder, the cache keys, `--resume` and `harness report` are the in-process ones, and the
run folder need only be on the driver's machine. A task that dies (worker crash, out of
memory) is a failed cell with Ray's error; the other tasks go on. Adapters, the data folder
and the model files must be at the same paths on every node (one machine: always so).

Ray opens no connection outside this machine when it runs here: without --address the harness
starts a local instance bound to 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's
single-node mode, which neither probes a public address for the node IP nor listens on other
interfaces; the same for a --address on 127.0.0.1/localhost), and usage stats are off
(RAY_USAGE_STATS_ENABLED=0) unless the environment says otherwise. With --address and a Ray
token at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and RAY_AUTH_MODE unset,
the driver uses token auth (Ray itself sends a token only to clusters it started or found).
"""
from __future__ import annotations

import os
import socket
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path

from .cell import ModelCache, attempt_cell
from .plan import NO_BACKEND, Cell, CompareConfig, cell_batch, lm_key
from ..errors import HarnessError
from ..files import atomic_path

# Ray task resources per backend. llama.cpp: --threads N asks for N CPUs (and runs N threads);
# hf runs torch on as many threads as Ray gives the task (Ray sets OMP_NUM_THREADS).
RAY_RESOURCES = {
    "llama-cpp": {"num_cpus": 1},
    "hf": {"num_cpus": 1},
    "vllm": {"num_cpus": 1, "num_gpus": 1},
    NO_BACKEND: {"num_cpus": 1},        # the human reference row: scoring only
}
# What the workers need of the driver's environment (a `ray start` node has its own).
ENV_PREFIXES = ("HARNESS_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "GGML_", "LLAMA_")
CONNECT_TIMEOUT_S = 5
HEALTH_TIMEOUT_S = 15


def run_in_process(cfg: CompareConfig, out: Path, todo: list[Cell], batch: dict, state: dict,
                   save, progress=None) -> None:
    """The default executor: the cells here, one after another in run order, sharing loaded
    models (ModelCache); run.json saved after each."""
    models = ModelCache(reuse=cfg.reuse_models)
    state["model_loads"] = models.loads
    for i, c in enumerate(todo):
        if progress:
            progress(i, len(todo), c)
        if c.status == "cached":
            continue
        attempt_cell(c, out, cfg, batch, models)
        models.keep_only({lm_key(x) for x in todo[i + 1:] if x.status == "pending"})
        save()


def ray_resources(cfg: CompareConfig, backend: str) -> dict:
    res = dict(RAY_RESOURCES.get(backend, {"num_cpus": 1}))
    if backend == "llama-cpp" and cfg.n_threads:
        res["num_cpus"] = cfg.n_threads
    res.update((cfg.ray_resources or {}).get(backend) or {})
    return res


def parse_ray_resources(items) -> dict:
    """["hf:num_gpus=1,num_cpus=4", "llama-cpp:num_cpus=2"] -> {"hf": {...}, ...}"""
    out: dict = {}
    for item in items or []:
        backend, _, rest = str(item).partition(":")
        backend = backend.strip()
        if not rest or backend not in RAY_RESOURCES:
            raise HarnessError(f"--ray-resources {item!r}: expected BACKEND:num_cpus=N,"
                               f"num_gpus=M with BACKEND one of "
                               f"{', '.join(b for b in RAY_RESOURCES if b != NO_BACKEND)}")
        for pair in rest.split(","):
            k, _, v = pair.partition("=")
            k = k.strip()
            try:
                n = float(v)
            except ValueError:
                n = -1
            if k not in ("num_cpus", "num_gpus") or n < 0:
                raise HarnessError(f"--ray-resources {item!r}: {pair.strip()!r} is not "
                                   f"num_cpus=N or num_gpus=N (N >= 0)")
            out.setdefault(backend, {})[k] = int(n) if n == int(n) else n
    return out


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _loopback(host: str | None) -> bool:
    return host is None or host in ("localhost", "::1") or host.startswith("127.")


def check_executor(cfg: CompareConfig) -> str:
    """The executor's name, checked before anything is written: a known one; for ray, the
    package installed and --address answering (one HarnessError line within seconds)."""
    if cfg.executor not in EXECUTORS:
        raise HarnessError(f"--executor {cfg.executor!r}: choose from {', '.join(EXECUTORS)}")
    if cfg.executor != "ray":
        if cfg.address:
            raise HarnessError("--address is for --executor ray")
        return cfg.executor
    import importlib.util
    if importlib.util.find_spec("ray") is None:
        raise HarnessError("--executor ray: the ray package is not installed here "
                           "(pip install -e '.[ray]')")
    if cfg.address and cfg.address != "auto":
        hp = _host_port(cfg.address)
        if hp is None:
            raise HarnessError(f"--address {cfg.address!r}: expected HOST:PORT (the Ray head's "
                               f"GCS port, 6379 by default) or ray://HOST:PORT")
        try:
            socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            raise HarnessError(f"--address {cfg.address}: no Ray cluster answers there "
                               f"({e.strerror or e}); start one with `ray start --head` or "
                               f"check the address") from None
        if not cfg.address.startswith("ray://"):
            _health_check(cfg)
    return "ray"


def _health_check(cfg: CompareConfig) -> None:
    """Ray's own GCS health check (`ray health-check`, also its version check) in a
    subprocess with a deadline: ray.init retries a port that accepts but is no Ray GCS (or a
    hung one) for minutes, printing a warning a second."""
    import subprocess
    import sys

    _ray_environment(cfg)
    why = f"no Ray GCS answered within {HEALTH_TIMEOUT_S} s"
    try:
        r = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "health-check",
                            "--address", cfg.address], capture_output=True, text=True,
                           timeout=HEALTH_TIMEOUT_S, stdin=subprocess.DEVNULL)
        if r.returncode == 0:
            return
        lines = [x.strip() for x in (r.stderr + r.stdout).splitlines() if x.strip()]
        why = lines[-1][:300] if lines else f"ray health-check exit code {r.returncode}"
    except subprocess.TimeoutExpired:
        pass
    raise HarnessError(f"--address {cfg.address}: not a Ray cluster that answers ({why})")


def _ray_environment(cfg: CompareConfig) -> None:
    """Environment Ray reads at import or connect (see the module docstring)."""
    hp = _host_port(cfg.address) if cfg.address else None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if cfg.address is None or (hp and _loopback(hp[0])):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # read at import
    if cfg.address and "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        # Ray sends its token to an explicit address only in token mode; a `ray start` head
        # turns token auth on whenever a token exists. A cluster without auth takes it too.
        os.environ["RAY_AUTH_MODE"] = "token"


def _connect(cfg: CompareConfig):
    """ray.init for this run: a local instance on 127.0.0.1 (all cores) without --address,
    else the cluster at --address. Returns the ray module."""
    _ray_environment(cfg)
    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    kw = dict(log_to_driver=False, logging_level="WARNING",
              runtime_env={"env_vars": env} if env else None)
    try:
        if cfg.address:
            ray.init(address=cfg.address, **kw)
        else:
            ray.init(address="local", include_dashboard=False, **kw)
    except Exception as e:   # ConnectionError, a version mismatch, ...
        raise HarnessError(f"--executor ray: cannot use the Ray cluster"
                           f"{' at ' + cfg.address if cfg.address else ''}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return ray


def _task_cfg(cfg: CompareConfig) -> dict:
    d = asdict(cfg)
    if cfg.data and cfg.data != "demo" and Path(cfg.data).exists():
        d["data"] = str(Path(cfg.data).resolve())   # the worker's cwd is not the driver's
    return d


def ray_cell(cell: dict, cfg: dict, batch: dict, n_threads: int | None) -> dict:
    """One cell in a Ray worker: attempt_cell into a scratch folder; the updated cell and the
    files it wrote, for the driver to place in the run folder."""
    c = Cell(**cell)
    config = CompareConfig(**{**cfg, "n_threads": n_threads})
    with tempfile.TemporaryDirectory(prefix="harness-cell-") as tmp:
        attempt_cell(c, Path(tmp), config, batch, ModelCache(reuse=False))
        folder = Path(tmp) / "cells" / c.key
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())} \
            if folder.is_dir() else {}
    return {"cell": asdict(c), "files": files}


def _write_cell_files(folder: Path, files: dict) -> None:
    """results.json last: it marks the cell done (as save_results does in-process)."""
    for name in sorted(files, key=lambda n: n == "results.json"):
        with atomic_path(folder / name) as tmp:
            Path(tmp).write_bytes(files[name])


def run_ray(cfg: CompareConfig, out: Path, todo: list[Cell], batch: dict, state: dict,
            save, progress=None) -> None:
    """Every pending cell a Ray task at once (Ray queues them on the cluster's resources);
    results written here as each finishes."""
    ray = _connect(cfg)
    try:
        remote = ray.remote(max_retries=0)(ray_cell)
        task_cfg = _task_cfg(cfg)
        pending = {}
        for c in todo:
            if c.status != "pending":
                continue
            res = ray_resources(cfg, c.backend)
            threads = (int(res["num_cpus"]) or 1) if c.backend == "llama-cpp" else None
            payload = asdict(c)
            if c.adapter:
                payload["adapter"] = str(Path(c.adapter).resolve())
            ref = remote.options(**res, name=f"harness {c.label}").remote(
                payload, task_cfg, {c.backend: cell_batch(c, None, batch)}, threads)
            pending[ref] = c
        state["executor"] = {"name": "ray", "address": cfg.address,
                             "cluster_resources": ray.cluster_resources(),
                             "task_resources": {c.key: ray_resources(cfg, c.backend)
                                                for c in pending.values()}}
        save()
        done = sum(c.status == "cached" for c in todo)
        if progress:
            progress(done, len(todo), next(iter(pending.values()), None))
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            c = pending.pop(ready[0])
            folder = out / "cells" / c.key
            try:
                got = ray.get(ready[0])
                adapter = c.adapter
                for k, v in got["cell"].items():
                    setattr(c, k, v)
                c.adapter = adapter
                _write_cell_files(folder, got["files"])
            except Exception as e:   # the task itself died: worker crash, OOM kill, ...
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                c.status, c.reason = "failed", f"ray task: {type(e).__name__}: {first}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "error.txt").write_text(f"{e}\n\n{traceback.format_exc()}")
            save()
            done += 1
            if progress:
                progress(done, len(todo), c)
    finally:
        ray.shutdown()


EXECUTORS = {
    "in-process": run_in_process,
    "ray": run_ray,
}
