#!/usr/bin/env bash
# Proves, without a GPU, that the GPU pin set (requirements/gpu.txt) installs together: pip's
# resolver (pinned pip, throwaway venv, CPython 3.11 on this linux x86_64) must find one
# version of every package that satisfies every pin and every transitive requirement, with a
# wheel (or a buildable sdist) for this platform. Nothing is installed. pip reads each wheel's
# metadata with HTTP range requests (--use-feature=fast-deps), so the CUDA wheels (GBs) are
# not downloaded. It does not prove that CUDA, Unsloth or vLLM run: no GPU here.
# Also checks that every dependency in pyproject.toml has a line in the file.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=${1:-requirements/gpu.txt}
PIP_VERSION=26.3
start=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3.11 -m venv "$tmp/venv" 2>/dev/null || python3 -m venv "$tmp/venv"
PY="$tmp/venv/bin/python"
"$PY" -m pip install -q "pip==$PIP_VERSION" 2>&1 | grep -v "is ignored" || true

"$PY" - "$REQ" <<'EOF'
import re, sys, tomllib
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
name = lambda line: norm(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line).group(1))
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
lines = [l.split("#")[0] for l in open(sys.argv[1])]
have = {name(l) for l in lines if l.strip()}
missing = sorted({name(d) for d in deps} - have)
if missing:
    sys.exit(f"{sys.argv[1]}: no line for pyproject dependencies: {', '.join(missing)}")
EOF

# timeout: should range requests stop working, pip would fall back to whole downloads (GBs)
if ! timeout 240 "$PY" -m pip install --dry-run --ignore-installed --use-feature=fast-deps \
        --quiet --report "$tmp/report.json" -r "$REQ" >"$tmp/pip.log" 2>&1; then
    grep -v -e "is ignored" -e "fast-deps" "$tmp/pip.log" | tail -40
    echo "gpu pins: $REQ does NOT resolve (pip $PIP_VERSION, $((SECONDS - start)) s)"
    exit 1
fi

"$PY" - "$tmp/report.json" "$REQ" "$((SECONDS - start))" <<'EOF'
import json, sys
report, req, secs = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
got = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
       for i in report["install"]}
key = ["torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "unsloth", "vllm",
       "lm-eval", "datasets", "huggingface-hub", "xformers", "triton"]
print(f"gpu pins: {req} resolves: {len(got)} packages (pip {report['pip_version']}, "
      f"python {report['environment']['python_full_version']}, "
      f"{report['environment']['platform_machine']}, {secs} s)")
print("  " + ", ".join(f"{k} {got[k]}" for k in key if k in got))
EOF
