#!/usr/bin/env bash
# Every figure quoted in README's "Measured here", in one serial run on an otherwise idle
# machine (llama.cpp and torch use all cores; a second heavy job halves every number).
#
#     make setup && bash benchmarks/measure_all.sh [STEP ...]
#
# Steps (default: all, in this order): prepare backends metrics validate train train_speed
# export export_formats compare train_department train_department_gemma department
# train_nextitem train_nextitem_gemma nextitem reference_engines batch_sizes hf_dtype
# compare_speed nextitem_rate nextitem_dtype hf_load train_grounded compare_grounded.
# Each step logs to results/measure/STEP.log
# and appends "STEP seconds" to results/measure/wall.tsv. Needs ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TOKENIZERS_PARALLELISM=false
H=.venv/bin/harness
PY=.venv/bin/python
RAW=${RAW:-../shared/data}
OUT=results/measure
SMOL=smollm2-135m-instruct
MODELS=${MODELS:-smollm2-135m-instruct,gemma3-270m}   # the bundled models: compare rows
ADAPTER=adapters/$SMOL-product_review-lora
mkdir -p "$OUT"

prepare()        { $H data prepare --raw-dir "$RAW" --out data/prepared; }
backends()       { $PY benchmarks/backends.py --prompts 8 --max-tokens 64; }
metrics()        { $PY benchmarks/metrics_speed.py --n 500 --raw-dir "$RAW"; }
validate()       { $H metrics validate --raw-dir "$RAW" --out "$OUT/validate"; }
train()          { $H train --model $SMOL --task product_review --epochs 1 --output "$ADAPTER" \
                     --resume; }
train_speed()    { $PY benchmarks/train_speed.py --examples 48 --repeat 2; }
export_()        { $H export "$ADAPTER" --format gguf-lora &&
                   $H export "$ADAPTER" --format gguf --quant q8_0 --quant q4_k_m --verify; }
export_formats() { $PY benchmarks/export_formats.py --prompts 8 --max-tokens 64 \
                     --out results/bench/export_formats.json; }
compare()        { $H compare --models "$MODELS" --tasks product_review \
                     --backends llama-cpp,hf --output "$OUT/compare-test" --resume; }
# Classification / ranking adapters: a fixed number of steps (a fraction of an epoch: 38,561
# department and 8,900 nextitem train records) to fit this machine's time; compare finds them.
task_adapter() { $H train --model "$1" --task "$2" --resume --output "adapters/$1-$2-lora" "${@:3}"; }
DEPT=(--max-steps 200 --batch-size 16 --grad-accum 1 --lr 5e-4)
NEXT=(--max-steps 120 --batch-size 4 --grad-accum 2)
train_department()       { task_adapter $SMOL product_department "${DEPT[@]}"; }
train_department_gemma() { task_adapter gemma3-270m product_department "${DEPT[@]}"; }
train_nextitem()         { task_adapter $SMOL product_nextitem "${NEXT[@]}"; }
train_nextitem_gemma()   { task_adapter gemma3-270m product_nextitem "${NEXT[@]}"; }
department()     { $H compare --models "$MODELS" \
                     --tasks product_department --backends llama-cpp --limit 200 \
                     --merged-quant q4_k_m,q8_0,f16 \
                     --output "$OUT/compare-department" --resume &&
                   $H baseline --task product_department; }
nextitem()       { $H compare --models "$MODELS" \
                     --tasks product_nextitem --backends llama-cpp --limit 200 \
                     --output "$OUT/compare-nextitem" --resume &&
                   $H baseline --task product_nextitem; }
# Speed (issue #12): each writes results/bench/NAME.json
reference_engines() { $PY benchmarks/reference_engines.py --repeat 2; }
batch_sizes()    { $PY benchmarks/batch_sizes.py; }
hf_dtype()       { $PY benchmarks/hf_dtype.py; }
compare_speed()  { $PY benchmarks/compare_speed.py; }
nextitem_rate()  { $PY benchmarks/nextitem_rate.py; }
hf_load()        { $PY benchmarks/hf_load.py; }
# The real test-split compare with SmolLM2's grounded adapter (issue #11's recipe), the seven
# cells of issue #12's 15-min goal; `compare_speed.py --breakdown` says where the time went.
GROUNDED=adapters/grounded
train_grounded() { $H data curate --data data/prepared/product_review --output data/curated &&
                   $H train --model $SMOL --task product_review --data data/curated --epochs 2 \
                     --output "$GROUNDED/$SMOL-product_review-lora" --resume; }
compare_grounded() { HARNESS_ADAPTERS_DIR=$GROUNDED $H compare --models "$MODELS" \
                       --tasks product_review --backends llama-cpp,hf \
                       --output "$OUT/compare-test-grounded" --resume &&
                     $PY benchmarks/compare_speed.py --breakdown "$OUT/compare-test-grounded"; }
nextitem_dtype() { for d in float32 bfloat16; do
                     $H compare --models $SMOL --tasks product_nextitem --backends hf \
                       --limit 200 --model-args hf:dtype=$d \
                       --output "results/bench/nextitem-200-hf-$d" --resume || return; done; }

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(prepare backends metrics validate train train_speed export \
                                 export_formats compare train_department train_department_gemma department \
                                 train_nextitem train_nextitem_gemma nextitem \
                                 reference_engines batch_sizes hf_dtype compare_speed \
                                 nextitem_rate nextitem_dtype hf_load train_grounded \
                                 compare_grounded)
for s in "${steps[@]}"; do
  fn=$s; [ "$s" = export ] && fn=export_
  echo "== $s ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
  t0=$(date +%s)
  $fn 2>&1 | tee "$OUT/$s.log"
  printf '%s\t%s\n' "$s" "$(( $(date +%s) - t0 ))" >> "$OUT/wall.tsv"
done
