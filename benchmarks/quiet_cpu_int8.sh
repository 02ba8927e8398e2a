#!/usr/bin/env bash
# int8 dynamic vs ONNX Runtime fp32 on a quiet CPU: the CPU of a lent GPU machine, where nothing else runs. Same protocol
# as on the shared 2-core machine (benchmarks/int8_speedup.py: repeated `qadistill bench` runs, 2 threads, ratio inside
# each run), on the student's architecture with random weights (speed only: accuracy is measured on the real student),
# exported there by `qadistill export` with the same code and the same onnxruntime version.
#
# Here, first: .gpu/quiet/student (config + tokenizer of the student), .gpu/quiet/data/wikiqa (for the parity sample),
#              cp312 wheels of onnxruntime, onnx, ml_dtypes, optimum, optimum-onnx in .gpu/qwhl (+ .gpu/whl as for cuda_bench.sh)
# There:       bash benchmarks/quiet_cpu_int8.sh        (PY=python DRY=1 to try the steps on this machine)
# Writes under $OUT the files of benchmarks/results/quiet_cpu/ (copy them there), with their reports.
set -u
OUT=${OUT:-/tmp/quiet_out}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -z "${DRY:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl .gpu/qwhl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 QADISTILL_HOME=${QADISTILL_HOME:-/tmp/quiet-home} QADISTILL_DATA_DIR=$PWD/.gpu/quiet/data
{ lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-400; uptime; $PY -c "import onnxruntime, optimum, transformers, torch, sys; print(sys.version.split()[0], 'onnxruntime', onnxruntime.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"; } 2>&1 | tee "$OUT/env.txt"
W=/tmp/quiet-work; rm -rf "$W"; mkdir -p "$W"; cp -r .gpu/quiet/student "$W/student"
$PY - "$W/student" <<'PYEOF' || exit 1
import sys, torch
from transformers import AutoConfig, BertForSequenceClassification
torch.manual_seed(0)
folder = sys.argv[1]
BertForSequenceClassification(AutoConfig.from_pretrained(folder)).save_pretrained(folder, safe_serialization=True)
PYEOF
echo "== export (onnx, O2, int8 dynamic)"
timeout ${T1:-150} $PY -m qadistill export "$W/student" --optimize O2 --quantize dynamic --parity-queries 20 --format json > "$OUT/export.json" 2> "$OUT/export.err"
echo "rc $?"
echo "== fused vs unfused SkipLayerNorm kernel on this CPU"
timeout ${T2:-60} $PY benchmarks/skip_layernorm.py --repeats 5 --out quiet_cpu/skip_layernorm_quiet.txt && cp benchmarks/results/quiet_cpu/skip_layernorm_quiet.txt "$OUT/"
echo "== int8 vs fp32, repeated bench runs, 2 threads"
timeout ${T3:-330} $PY benchmarks/int8_speedup.py student --lengths ${LENGTHS:-128,64} --repeats ${REPEATS:-3} --threads 2 --min-time ${MIN_TIME:-2} --out quiet_cpu/int8_speedup_quiet.json
echo "rc $?"; cp benchmarks/results/quiet_cpu/int8_speedup_quiet.json "$OUT/" 2>/dev/null
uptime | tee -a "$OUT/env.txt"
# how RESULTS.md shows each file (benchmarks/_report.py): the reports results/quiet_cpu already has travel with the files
cp benchmarks/results/quiet_cpu/*.meta.json "$OUT/"
