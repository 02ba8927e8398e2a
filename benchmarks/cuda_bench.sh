#!/usr/bin/env bash
# The CUDA figures, in one call on a lent GPU machine (the `device` tool of this workplace; any CUDA box will do).
#
# Here, first:   python benchmarks/cuda_payload.py pack STUDENT_FOLDER .gpu/payload --shape NAME=FOLDER ... --data DATA_DIR
#                (plus the wheels that machine lacks in .gpu/whl; see benchmarks/README.md)
# There:         bash benchmarks/cuda_bench.sh            (DEV=cpu for a dry run of the same steps on a CPU machine)
#
# Writes under $OUT: cuda_env.txt, bench_cuda_student.json (+ .png), bench_cuda_shapes.json, ort_cuda.txt, each with its
# report (the heading and place RESULTS.md gives it: benchmarks/_report.py).
set -u
OUT=${OUT:-/tmp/cuda_out}
DEV=${DEV:-cuda}
P=${P:-.gpu}
REPO=$PWD
mkdir -p "$OUT"
if ls "$P"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$P"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$REPO
else
  export PYTHONPATH=$REPO
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 QADISTILL_HOME=${QADISTILL_HOME:-/tmp/qadistill-home}
W=${W:-/tmp/cudawork}
python3 "$REPO/benchmarks/cuda_payload.py" unpack "$P/payload" "$W" || exit 1
export QADISTILL_DATA_DIR=$W/data
S=$(cat "$P/payload/student_name")
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
  python3 -c "import torch, onnxruntime as o, transformers, sys; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'); print('onnxruntime', o.__version__, o.get_available_providers()); print('transformers', transformers.__version__)"
  nproc
} 2>&1 | tee "$OUT/cuda_env.txt"
cd "$W" || exit 1
if [ "$DEV" = cuda ]; then
  SB=torch,torch-fp16,torch-bf16,torch-fp16-compile,torch-bf16-compile; TB=torch,torch-bf16; BS=1,32,256
else
  SB=torch,torch-compile; TB=torch; BS=1
fi
echo "== 1. the student under every torch backend (accuracy measured per backend on WikiQA test)"
timeout ${T1:-330} python3 -m qadistill bench "$S" --device "$DEV" --backends "$SB" --batch-sizes "$BS" --max-length 128 \
  --min-time 0.5 --baseline "$S:torch" --format json --plot "$OUT/bench_cuda_student.png" > "$OUT/bench_cuda_student.json"
echo "rc $?"
echo "== 2. teacher architectures with random weights of the real shapes: speed only, accuracy not measured"
timeout ${T2:-150} python3 -m qadistill bench shapes/* --device "$DEV" --backends "$TB" --batch-sizes "$BS" --max-length 128 \
  --min-time 0.5 --no-accuracy --format json > "$OUT/bench_cuda_shapes.json"
echo "rc $?"
echo "== 3. ONNX Runtime on CUDA: only where this image's onnxruntime has the provider"
python3 -m qadistill bench "$S" --device "$DEV" --backends ort --batch-sizes 1 --no-accuracy --format json > "$OUT/ort_cuda.txt" 2>&1
echo "rc $?" >> "$OUT/ort_cuda.txt"; cat "$OUT/ort_cuda.txt" | tail -3
python3 "$REPO/benchmarks/cuda_summary.py" "$OUT/bench_cuda_student.json" "$OUT/bench_cuda_shapes.json" | tee "$OUT/cuda_summary.md"
# how RESULTS.md shows each file once copied into benchmarks/results/cuda/ (benchmarks/_report.py; edit the titles there)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1); GPU=${GPU:-$DEV}
R="python3 $REPO/benchmarks/_report.py"
$R "$OUT/ort_cuda.txt" --order 5 --note "ONNX Runtime on CUDA (\`qadistill bench --backends ort --device $DEV\` on the $GPU):"
$R "$OUT/bench_cuda_student.json" --order 10 --title "The student on the $GPU, every PyTorch CUDA backend, WikiQA test MAP measured per backend (plot: bench_cuda_student.png)"
$R "$OUT/bench_cuda_shapes.json" --order 30 --title "Teacher architectures on the $GPU (speed only)"
$R "$OUT/bench_cuda_student.png" --order null --title "Plot of bench_cuda_student.json (\`qadistill bench --plot\`)"
$R "$OUT/cuda_env.txt" --order null --title "The $GPU machine: nvidia-smi, library versions, CPU count"
$R "$OUT/cuda_summary.md" --order null --title "The tables, as cuda_summary.py printed them"
