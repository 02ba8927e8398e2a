"""In-process A/B of three ONNX Runtime sessions (fp32, int8 with every MatMul quantized, int8 with weight MatMuls only),
alternating order per round, random token ids padded to 128; then dev/test MAP of both int8 variants at batch 1 and 32.
Caveat: three 2-thread sessions in one process can steal time from each other (spinning threads); bench runs one
process per backend. Ad hoc: paths are the benched student's artifacts as they were before the default changed.

  python benchmarks/int8_ab_inprocess.py
"""
import time, statistics, numpy as np, onnxruntime as ort, shutil, sys
from pathlib import Path
from onnxruntime.quantization import quantize_dynamic, QuantType
base = Path("/root/.local/share/qadistill/artifacts/bench-l6f3-two-stage-s1-onnx")
cur = Path("/root/.local/share/qadistill/artifacts/bench-l6f3-two-stage-s1-int8-dynamic")
out = Path("/tmp/constb"); shutil.rmtree(out, ignore_errors=True); shutil.copytree(cur, out)
(out/"model.onnx").unlink()
t=time.time()
quantize_dynamic(str(base/"model.onnx"), str(out/"model.onnx"), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"],
                 extra_options={"MatMulConstBOnly": True})
print("quantized", time.time()-t, (out/"model.onnx").stat().st_size/1e6)
import onnx
ops = [n.op_type for n in onnx.load(str(cur/"model.onnx")).graph.node]
ops2 = [n.op_type for n in onnx.load(str(out/"model.onnx")).graph.node]
from collections import Counter
print("current", Counter(ops).most_common(8)); print("constB", Counter(ops2).most_common(8))
def sess(p):
    so = ort.SessionOptions(); so.intra_op_num_threads=2; so.inter_op_num_threads=1
    return ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
S = {"fp32": sess(base/"model.onnx"), "int8": sess(cur/"model.onnx"), "int8-constB": sess(out/"model.onnx")}
rng = np.random.default_rng(0)
for bs in (1, 32):
    L=128
    feeds = {"input_ids": rng.integers(1000, 20000, (bs, L)).astype("int64"), "attention_mask": np.ones((bs, L), "int64"), "token_type_ids": np.zeros((bs, L), "int64")}
    names = {k: [i.name for i in s.get_inputs()] for k, s in S.items()}
    for k, s in S.items():
        for _ in range(3): s.run(None, {n: feeds[n] for n in names[k]})
    times = {k: [] for k in S}
    reps = 100 if bs == 1 else 10
    for r in range(reps):
        for k, s in (S.items() if r % 2 == 0 else reversed(list(S.items()))):
            t0 = time.perf_counter(); s.run(None, {n: feeds[n] for n in names[k]}); times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(bs, {k: round(v, 2) for k, v in med.items()}, "int8 x", round(med["fp32"]/med["int8"], 2), "constB x", round(med["fp32"]/med["int8-constB"], 2))
sys.path.insert(0, "/work/main/benchmarks")
from int8_settings import score
from qadistill.data import load_dataset
for split in ("dev", "test"):
    ds = load_dataset("wikiqa", split)
    for name, folder in (("int8", cur), ("int8-constB", out)):
        for b in (1, 32):
            print(split, name, "batch", b, round(score(folder, ds, 128, b)["map"], 4), flush=True)
