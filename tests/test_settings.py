"""One home per setting (issue #14): TrainConfig / CompareConfig hold the defaults, the CLI
shows them and passes on only what is given; metric directions come from the task YAML, the
report's key metrics are metrics the tasks emit; the default model and the offline
environment are defined once. Each test here failed on the tree before #14."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import typer
import yaml

from harness.cli import app
from harness.compare.plan import CompareConfig, plan
from harness.models import DEFAULT_MODEL, OFFLINE_ENV
from harness.paths import ROOT, TASKS_DIR
from harness.train.config import PRESETS, TrainConfig

from _cli import run_cli


def _command(*path: str):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


# --- train -------------------------------------------------------------------------------

def test_every_train_option_shows_the_trainconfig_default_and_passes_nothing_by_itself():
    """The CLI had its own defaults (lora_dropout 0.05 against train()'s 0.0)."""
    defaults = TrainConfig()
    params = {p.name: p for p in _command("train").params}
    names = {f.name for f in fields(TrainConfig)} & set(params)
    assert {"lora_dropout", "lr", "model", "task", "epochs", "batch_size"} <= names
    for name in names:
        p, value = params[name], getattr(defaults, name)
        if p.is_flag:               # on/off switches: the dataclass value itself
            assert p.default == value, name
        else:
            assert p.default is None, name
            if value is not None:
                assert f"[default: {value}]" in (p.help or ""), name
    assert "[default: 0.0]" in params["lora_dropout"].help
    assert defaults.model == DEFAULT_MODEL


def test_preset_help_says_what_the_preset_sets():
    """The help said 'demo set, 8 steps' while the preset ran 16."""
    text = {p.name: p for p in _command("train").params}["preset"].help
    demo = PRESETS["demo"]
    assert f"max_steps={demo['max_steps']}" in text
    assert "8 steps" not in text


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import AutoTokenizer

    from harness.models import resolve_hf
    from _train_models import build_tiny

    pretrained, gguf = resolve_hf(DEFAULT_MODEL)
    tok = AutoTokenizer.from_pretrained(pretrained, gguf_file=gguf)
    return build_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama", tok)


def test_harness_train_trains_with_the_trainconfig_defaults(tiny_llama, tmp_path):
    """`harness train` with only model, data, steps and output: training.json records every
    other hyperparameter at TrainConfig's value (lora_dropout 0.0, not the CLI's old 0.05)."""
    out = tmp_path / "ad"
    res = run_cli(["train", "--model", str(tiny_llama), "--data", "demo", "--max-steps", "1",
                   "--eval-examples", "2", "--output", str(out), "--quiet"],
                  {**__import__("os").environ, **OFFLINE_ENV}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    hp = json.loads((out / "training.json").read_text())["hyperparameters"]
    defaults = TrainConfig()
    for name, value in hp.items():
        if name not in ("max_steps", "eval_examples"):
            assert value == getattr(defaults, name), name
    assert hp["lora_dropout"] == 0.0 and hp["max_steps"] == 1


def test_harness_train_preset_runs_what_its_help_says(tiny_llama, tmp_path):
    out = tmp_path / "ad"
    res = run_cli(["train", "--model", str(tiny_llama), "--preset", "demo", "--eval-examples",
                   "2", "--output", str(out), "--quiet"],
                  {**__import__("os").environ, **OFFLINE_ENV}, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads((out / "training.json").read_text())
    assert rec["total_steps"] == PRESETS["demo"]["max_steps"]     # planned (early stop may cut)
    assert rec["eval_every"] == PRESETS["demo"]["eval_every"]
    assert rec["hyperparameters"]["lr"] == PRESETS["demo"]["lr"]
    assert rec["hyperparameters"]["eval_examples"] == 2       # the command line wins


# --- compare -----------------------------------------------------------------------------

def test_compareconfig_plans_the_backends_the_cli_runs():
    """CompareConfig() planned vllm cells (no vllm here) while `harness compare` did not."""
    cfg = CompareConfig()
    cells = plan(cfg.models, cfg.tasks, cfg.backends, merged_quant=cfg.merged_quant)
    assert cells and {c.backend for c in cells} == set(cfg.backends) == {"llama-cpp", "hf"}
    params = {p.name: p for p in _command("compare").params}
    for name in ("models", "tasks", "backends", "merged_quant", "executor"):
        assert params[name].default is None, name
    assert "[default: llama-cpp, hf]" in params["backends"].help
    demo_params = {p.name: p for p in _command("demo").params}
    assert demo_params["backends"].default is None


# --- report: directions and key metrics --------------------------------------------------

class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def task_metrics() -> dict[str, dict[str, bool]]:
    """task -> {metric: higher_is_better} as each task YAML lists them (`include:` followed)."""
    def load(path: Path) -> dict:
        body = yaml.load(path.read_text(), Loader=_Loader)
        if "include" in body:
            body = {**load(path.parent / body["include"]), **body}
        return body
    out = {}
    for y in sorted(TASKS_DIR.glob("*/*.yaml")):
        body = load(y)
        out[body["task"]] = {m["metric"]: m["higher_is_better"] for m in body["metric_list"]}
    return out


def test_report_directions_are_the_task_yamls():
    """A rise of invalid, nli_unsupported_rate or nli_contradiction was reported as better: the
    report takes each direction from the higher_is_better lm-eval writes into results.json."""
    from harness.compare.summary import NEUTRAL, directions, higher_is_better

    yamls = task_metrics()
    cells = [{"task": t, "results": {"higher_is_better": {t: hib}}} for t, hib in yamls.items()]
    dirs = directions(cells)
    for metric in ("invalid", "nli_unsupported_rate", "nli_contradiction"):
        assert higher_is_better(metric, dirs) is False, metric
    for task, hib in yamls.items():
        for metric, value in hib.items():
            if metric not in NEUTRAL:
                assert higher_is_better(metric, dirs) is value, (task, metric)


def test_key_and_primary_metrics_are_metrics_the_tasks_emit():
    """The key metrics named f1 / exact_match, which no task emits (macro-F1 never reached the
    terminal table)."""
    from harness.compare.summary import KEY_METRICS, KEY_TABLE, PRIMARY

    yamls = task_metrics()
    for table in (KEY_METRICS, KEY_TABLE, PRIMARY):
        for task, metrics in table.items():
            assert set(metrics) <= set(yamls[task]), (task, set(metrics) - set(yamls[task]))
    for task in ("product_department", "product_aisle"):
        assert "macro_f1" in KEY_METRICS[task] and "macro_f1" in KEY_TABLE[task]


def test_macro_f1_reaches_the_terminal_table():
    from rich.console import Console

    from harness.compare.render import print_tables

    rows = [{"model": "m", "variant": v, "backend": "llama-cpp", "task": "product_department",
             "status": "done", "n": 10, "acc": a, "acc_norm": a, "macro_f1": f}
            for v, a, f in (("base", 0.1, 0.05), ("tuned", 0.7, 0.61))]
    console = Console(record=True, width=200)
    print_tables(rows, [], console)
    text = console.export_text()
    assert "macro_f1" in text and "0.61" in text


# --- one literal each --------------------------------------------------------------------

def _code_files():
    return [p for d in ("harness", "benchmarks") for p in sorted((ROOT / d).rglob("*.py"))]


def test_the_default_model_name_is_written_once():
    """It was a literal in 7 places (CLI options, backends, trainer, eval): now only
    harness.models.DEFAULT_MODEL (and two uses of the name that are not a default)."""
    import ast

    allowed = {"harness/models.py": "DEFAULT_MODEL",
               "harness/metrics/config.py": "the fluency reference LM when Gemma is under test",
               "harness/compare/summary.py": "its short name in the tables"}
    uses = {str(p.relative_to(ROOT)) for p in _code_files()
            for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.Constant) and node.value == DEFAULT_MODEL}
    assert uses <= set(allowed) and "harness/models.py" in uses, uses - set(allowed)


def test_the_offline_environment_is_set_in_one_place():
    """It was spelled out in 7 places; now harness.models.OFFLINE_ENV."""
    uses = [str(p.relative_to(ROOT)) for p in _code_files() + sorted((ROOT / "tests").glob("*.py"))
            if '"HF_DATASETS_OFFLINE"' in p.read_text() and p.name != "test_settings.py"]
    assert uses == ["harness/models.py"], uses
    assert OFFLINE_ENV["HF_HUB_OFFLINE"] == "1"


# --- the model under test reaches the metrics as an argument -----------------------------

def test_eval_hands_the_model_under_test_to_the_metrics_as_task_metadata(monkeypatch):
    import os

    from harness.evaluate.runner import prepare_argv

    monkeypatch.delenv("HARNESS_MODEL_UNDER_TEST", raising=False)
    argv = prepare_argv(["--model", "llama-cpp", "--model_args", "model=gemma3-270m",
                         "--tasks", "product_review", "--metadata", '{"data": "demo"}'])
    meta = json.loads(argv[argv.index("--metadata") + 1])
    assert meta == {"data": "demo", "model_under_test": "gemma3-270m"}
    assert "HARNESS_MODEL_UNDER_TEST" not in os.environ
