"""Backends stage: our lm-eval models, one per file (llama_cpp.py: `--model llama-cpp`,
hf.py: `--model harness-hf`), registered with lm-eval's own @register_model when
harness.evaluate.runner imports them; throughput.py times every run."""
