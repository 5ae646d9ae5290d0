"""`harness eval`: lm-eval's own runner, with our backends registered, our task folder included,
the model's chat template applied when it has one, and `throughput` added to the results JSON.

    run_cli(["--model", "llama-cpp", "--model_args", "model=smollm2-135m-instruct",
             "--tasks", "product_review", "--limit", "20", "--output_path", "out"])
    evaluate("llama-cpp", "model=smollm2-135m-instruct", ["product_review"], limit=20)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..errors import HarnessError
from ..files import write_json
from ..models import DEFAULT_MODEL, set_offline_defaults
from .lm_eval_tasks import include_path, task_manager_args

# lm-eval model name -> our registered class ("hf" gets throughput timing)
MODEL_ALIASES = {"hf": "harness-hf", "huggingface": "harness-hf"}


def parse_model_args(model_args: str | dict | None) -> dict:
    if isinstance(model_args, dict):
        return dict(model_args)
    out = {}
    for part in filter(None, (model_args or "").split(",")):
        if "=" not in part:
            raise HarnessError(f"--model_args: {part!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def is_chat_model(model_args: dict) -> bool:
    """True when the model has a chat template: registry flag, GGUF metadata or HF tokenizer."""
    from ..models import get_spec, registry

    name = model_args.get("model") or model_args.get("pretrained") or ""
    if name in registry():
        return get_spec(name).chat
    gguf = model_args.get("gguf_file")
    path = Path(name) / gguf if gguf else Path(name)
    if path.suffix == ".gguf" or path.is_file():
        from ..backends.gguf_reader import scan_gguf  # a corrupt or renamed file: one error line
        from ..models import resolve_gguf
        return "tokenizer.chat_template" in scan_gguf(resolve_gguf(str(path))).kv
    if path.is_dir():
        cfg = path / "tokenizer_config.json"
        return (path / "chat_template.jinja").exists() or (
            cfg.exists() and "chat_template" in json.loads(cfg.read_text()))
    return False


def with_model_under_test(metadata: dict | None, margs: dict) -> dict:
    """The task metadata with the model being evaluated in it (`model_under_test`), so the
    metrics know it (the fluency reference LM must be another one); one given already wins."""
    out = dict(metadata or {})
    name = margs.get("model") or margs.get("pretrained")
    if name and "model_under_test" not in out:
        out["model_under_test"] = str(name)
    return out


def _register() -> None:
    from ..backends import hf, llama_cpp  # noqa: F401  (@register_model)


class MetricClock:
    """Wall seconds lm-eval spends scoring (filters and process_results) since reset()."""
    seconds = 0.0

    @classmethod
    def reset(cls) -> None:
        cls.seconds = 0.0


def _patch_task_timing() -> None:
    """Time every task's apply_filters and process_results into MetricClock (lm-eval calls
    process_results once per document; product_review scores all documents in one batch in
    its filter, see harness.metrics.prefetch)."""
    import functools

    from lm_eval.api.task import ConfigurableTask

    if getattr(ConfigurableTask, "_harness_timed", False):
        return
    for name in ("apply_filters", "process_results"):
        def timed(self, *a, _orig=getattr(ConfigurableTask, name), **k):
            t0 = time.perf_counter()
            try:
                return _orig(self, *a, **k)
            finally:
                MetricClock.seconds += time.perf_counter() - t0
        setattr(ConfigurableTask, name, functools.wraps(getattr(ConfigurableTask, name))(timed))
    ConfigurableTask._harness_timed = True


def _patch_cpu_data_parallel() -> None:
    """Data-parallel lm-eval on CPU processes: `accelerate launch --num_processes N -m
    harness.cli eval --model hf ...`. lm-eval's HFLM shards the documents over the processes
    only when it counts more than one GPU (its `gpus > 1` branch sets rank and world size);
    on CPU its Accelerator() does not even join the launched processes (accelerate needs
    cpu=True for that), so every process would run every document. Here, under a launch of
    N > 1 processes without CUDA, the processes first join one gloo group (PartialState(cpu=
    True), which HFLM's Accelerator shares), and after HFLM's own __init__ an HFLM on CPU takes
    rank = process index and world size = N: lm-eval's evaluator then gives
    each process every N-th document and gathers the samples and metrics on rank 0 (gloo),
    which alone writes the results. GPU runs take lm-eval's own path, unchanged."""
    import functools

    from lm_eval.models.huggingface import HFLM

    if getattr(HFLM, "_harness_cpu_dp", False):
        return
    orig = HFLM.__init__

    @functools.wraps(orig)
    def init(self, *a, **k):
        import torch
        from accelerate import PartialState

        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            # HFLM's Accelerator() then shares this state: one gloo group (MULTI_CPU), not
            # N single processes (accelerate joins CPU processes only when asked, cpu=True)
            PartialState(cpu=True)
        orig(self, *a, **k)
        acc = getattr(self, "accelerator", None)
        if acc is not None and acc.num_processes > 1 and getattr(self, "_world_size", 1) == 1 \
                and self.device.type == "cpu":
            self._rank, self._world_size = acc.process_index, acc.num_processes
    HFLM.__init__ = init
    HFLM._harness_cpu_dp = True


def _results_with_throughput(results: dict) -> dict:
    from ..backends.throughput import METER
    results["throughput"] = METER.summary()
    results["throughput"]["metric_s"] = round(MetricClock.seconds, 3)
    return results


def _patch_tracker() -> None:
    """Make lm-eval's EvaluationTracker add `throughput` to every results file it writes."""
    import lm_eval.loggers as loggers

    base = loggers.EvaluationTracker
    if getattr(base, "_harness", False):
        return

    class ThroughputTracker(base):
        _harness = True

        def save_results_aggregated(self, results, samples=None):
            return super().save_results_aggregated(_results_with_throughput(results), samples)

    loggers.EvaluationTracker = ThroughputTracker


# Our spellings (the other harness commands') -> lm-eval's own.
FLAG_ALIASES = {"--model-args": "--model_args", "--output": "--output_path",
                "--output-path": "--output_path"}


def _flag_value(argv: list[str], flag: str) -> str | None:
    if flag not in argv:
        return None
    i = argv.index(flag) + 1
    if i >= len(argv) or argv[i].startswith("--"):
        raise HarnessError(f"{flag}: needs a value")
    return argv[i]


def check_argv(argv: list[str]) -> list[str]:
    """Our flag spellings mapped to lm-eval's (--model-args, --output, --threads N), and the
    mistakes lm-eval would answer with a traceback reported as one line first."""
    argv = [FLAG_ALIASES.get(a, a) for a in argv]
    argv = [a for x in argv for a in ([FLAG_ALIASES[x.split("=", 1)[0]], x.split("=", 1)[1]]
                                      if "=" in x and x.split("=", 1)[0] in FLAG_ALIASES
                                      else [x])]
    if "--threads" in argv:
        i = argv.index("--threads")
        n = _flag_value(argv, "--threads")
        del argv[i:i + 2]
        margs = _flag_value(argv, "--model_args")
        if margs is None:
            argv += ["--model_args", f"n_threads={n}"]
        else:
            argv[argv.index("--model_args") + 1] = f"{margs},n_threads={n}"
    if not any(a in argv for a in ("--tasks", "-t")):
        raise HarnessError("harness eval: give --tasks (e.g. --model llama-cpp --model_args "
                           "model=smollm2-135m-instruct --tasks product_review --limit 20); "
                           "lm-eval's flags: `.venv/bin/lm_eval run --help`")
    tasks = _flag_value(argv, "--tasks") if "--tasks" in argv else _flag_value(argv, "-t")
    if not [t for t in tasks.split(",") if t.strip()]:
        raise HarnessError("--tasks: empty")
    limit = _flag_value(argv, "--limit")
    if limit is not None:
        try:
            ok = float(limit) > 0
        except ValueError:
            ok = False
        if not ok:
            raise HarnessError(f"--limit {limit}: expected a number of documents (or a "
                               f"fraction of them) above 0")
    meta = _flag_value(argv, "--metadata")
    if meta is not None:
        try:
            if not isinstance(json.loads(meta), dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise HarnessError(f"--metadata {meta!r}: expected a JSON object such as "
                               f'\'{{"data": "demo"}}\' ({e})') from None
    if "--model_args" in argv:
        parse_model_args(_flag_value(argv, "--model_args"))
    return argv


def prepare_argv(argv: list[str]) -> list[str]:
    argv = check_argv(argv)
    if "--model" in argv:
        i = argv.index("--model") + 1
        argv[i] = MODEL_ALIASES.get(argv[i], argv[i])
    if "--include_path" not in argv and (inc := include_path()):
        argv += ["--include_path", inc]   # none when set-up registered tasks/ with lm-eval
    if "--apply_chat_template" not in argv and "--no_chat_template" not in argv:
        margs = parse_model_args(argv[argv.index("--model_args") + 1]) if "--model_args" in argv \
            else {}
        if not margs:
            margs = {"model": DEFAULT_MODEL}
        if is_chat_model(margs):
            argv.append("--apply_chat_template")
    if "--model_args" in argv:   # the metrics learn the model under test from the metadata
        meta = json.loads(_flag_value(argv, "--metadata") or "{}")
        meta = with_model_under_test(meta, parse_model_args(_flag_value(argv, "--model_args")))
        if "--metadata" in argv:
            argv[argv.index("--metadata") + 1] = json.dumps(meta)
        else:
            argv += ["--metadata", json.dumps(meta)]
    if "--no_chat_template" in argv:
        argv.remove("--no_chat_template")
    return argv


def run_cli(argv: list[str]) -> None:
    """lm-eval's CLI with our additions; argv are lm-eval's own flags."""
    set_offline_defaults()
    argv = prepare_argv(argv)      # mistakes in the flags: one line, before lm-eval loads
    _register()
    _patch_tracker()
    _patch_task_timing()
    _patch_cpu_data_parallel()
    from lm_eval._cli.harness import HarnessCLI

    old = sys.argv
    sys.argv = ["lm-eval", "run", *argv]
    try:
        cli = HarnessCLI()
        cli.execute(cli.parse_args())
    except ValueError as e:
        if "Tasks not found" in str(e) or "no tasks found" in str(e):
            from ..tasks.records import task_names
            raise HarnessError(f"--tasks: {e}; this harness's tasks: {', '.join(task_names())} (and "
                               f"lm-eval's own: `.venv/bin/lm_eval ls tasks`)") from None
        if "Attempted to load model" in str(e):
            raise HarnessError(f"--model {_flag_value(argv, '--model')}: no such lm-eval model; "
                               f"ours: llama-cpp, hf (lm-eval's own: `.venv/bin/lm_eval run "
                               f"--help`)") from None
        raise
    finally:
        sys.argv = old


def load_lm(model: str, model_args: str | dict, batch_size: int | str = 1):
    """An lm-eval LM instance (our registered backends included), to pass to evaluate() for
    several runs on one loaded model. batch_size goes in as a model arg (a batch_size in
    model_args wins)."""
    set_offline_defaults()
    _register()
    from lm_eval.api.registry import get_model

    return get_model(MODEL_ALIASES.get(model, model)).create_from_arg_obj(
        {"batch_size": batch_size, **parse_model_args(model_args)})


def evaluate(model, model_args: str | dict, tasks: list[str], *, limit: int | None = None,
             output_path: str | os.PathLike | None = None, log_samples: bool = True,
             apply_chat_template: bool | None = None, metadata: dict | None = None,
             batch_size: int | str = 1, gen_kwargs: str | None = None, seed: int = 0,
             model_under_test: str | None = None, model_name: str | None = None) -> dict:
    """Python API: run lm-eval in-process, return its results dict with `throughput`; when
    output_path is given, write results.json (+ samples_<task>.jsonl) there atomically.

    model: an lm-eval model name, or an LM instance (load_lm) that is used as it is; then
    model_args still say which model it is (chat template, fluency reference), batch_size is
    the instance's own, and model_name names it in the results' config."""
    set_offline_defaults()
    _register()
    _patch_task_timing()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from ..backends.throughput import METER

    margs = parse_model_args(model_args)
    metadata = with_model_under_test(metadata, {"model": model_under_test} if model_under_test
                                     else margs)
    if apply_chat_template is None:
        apply_chat_template = is_chat_model(margs)
    METER.reset()
    MetricClock.reset()
    tm = TaskManager(metadata=metadata, **task_manager_args(
        [tasks] if isinstance(tasks, str) else list(tasks)))
    if isinstance(model, str):
        model = MODEL_ALIASES.get(model, model)
    res = simple_evaluate(model=model, model_args=margs, tasks=tasks,
                          limit=limit, log_samples=log_samples, task_manager=tm,
                          apply_chat_template=apply_chat_template, batch_size=batch_size,
                          gen_kwargs=gen_kwargs, random_seed=seed, numpy_random_seed=seed,
                          torch_random_seed=seed, fewshot_random_seed=seed,
                          metadata=metadata)
    if res is None:
        raise HarnessError("lm-eval returned no results")
    if model_name and not isinstance(model, str):
        res["config"]["model"] = MODEL_ALIASES.get(model_name, model_name)
    _results_with_throughput(res)
    if output_path is not None:
        save_results(res, Path(output_path))
    return res


def save_results(res: dict, out: Path) -> None:
    from lm_eval.utils import handle_non_serializable
    from ..files import write_jsonl

    samples = res.get("samples") or {}
    for task, rows in samples.items():
        write_jsonl(out / f"samples_{task}.jsonl",
                    (json.loads(json.dumps(r, default=handle_non_serializable)) for r in rows))
    body = {k: v for k, v in res.items() if k != "samples"}
    write_json(out / "results.json", json.loads(json.dumps(body, default=handle_non_serializable)))
