"""Evaluate stage: lm-eval with our backends and tasks (runner.py), the registration of tasks/
with the installed lm-eval (lm_eval_tasks.py) and the rescoring of saved samples (rescore.py)."""
