"""Share of the int8 GEMM peak, measured so that a noisy shared machine cannot decide it: in one process, round after
round, this CPU's int8 GEMM rate (ONNX Runtime MatMulInteger, 2048^3), each student's int8 export and the BERT-base
cross-encoder's int8 export (the fair anchor: random weights, speed only) are timed back to back, and every ratio is
taken inside its round — student GOPS / peak GOPS, student pairs/s / BERT-base pairs/s, one student's pairs/s over the
first's — then summarised as the median over rounds with its quartiles. A single `qadistill bench` run moves by ±20% here between runs minutes apart
(benchmarks/results/head_shapes.json shows the spread); adjacent timings share the machine's state.

Same settings as `qadistill bench` and benchmarks/fair_anchors.py: real WikiQA dev pairs padded to the length, each
export with the ONNX Runtime session settings its manifest records (denormals flushed, SkipLayerNorm unfused), the same
thread count for all three; GOPS count the matrix-multiply operations of one padded pair from the model's config
(fair_anchors.ops_per_pair). A pause between timings lets the previous session's threads stop spinning.

  python benchmarks/gemm_share.py STUDENT [STUDENT ...] [--rounds 15] [--threads 2] [--max-length 128] [--out gemm_share.json]

Each STUDENT is a built student with an `-int8-dynamic` export; the BERT-base anchor is made and exported as
benchmarks/fair_anchors.py does, unless it is registered already. Writes benchmarks/results/gemm_share.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _report import write_json
from fair_anchors import export, folder_of, int8_gemm, make_bert_base, median_seconds, ops_per_pair

HERE = Path(__file__).resolve().parent
TITLE = "Share of the int8 GEMM peak and speed-up over BERT-base int8, ratios inside each of {rounds} rounds: {student}"


def quartiles(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "q1": q[0], "q3": q[2], "min": min(xs), "max": max(xs)}


def main() -> None:
    from qadistill.backends import OrtBackend
    from qadistill.data import load_dataset
    from qadistill.errors import QadistillError

    ap = argparse.ArgumentParser()
    ap.add_argument("students", nargs="+")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", default="gemm_share.json")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    int8 = {name: folder_of(f"{name}-int8-dynamic") for name in a.students}
    bert = make_bert_base(folder_of(a.students[0]))
    try:
        bert_int8 = folder_of("bert-base-cross-int8-dynamic")
    except QadistillError:  # not exported yet
        export(str(bert))
        bert_int8 = folder_of("bert-base-cross-int8-dynamic")

    gemm_run, gemm_ops = int8_gemm(a.threads)  # MatMulInteger 2048^3

    pairs = load_dataset("wikiqa", "dev").pairs[:32]
    models = {}
    for key, folder in [*int8.items(), ("bert-base", bert_int8)]:
        be = OrtBackend(Path(folder), a.max_length, threads=a.threads).load()
        encs = {bs: be.encode([p.query for p in pairs[:bs]], [p.passage for p in pairs[:bs]], pad_to_max=True) for bs in (1, 32)}
        models[key] = (be, encs, ops_per_pair(Path(folder), a.max_length))

    def timed(fn, runs: int) -> float:
        time.sleep(0.05)  # let the previous session's pool stop spinning
        return median_seconds(fn, runs)

    runs = {**{(n, bs): (40 if bs == 1 else 6) for n in a.students for bs in (1, 32)}, ("bert-base", 1): 6, ("bert-base", 32): 1}
    rounds = []
    for i in range(a.rounds):
        peak_before = gemm_ops / timed(gemm_run, 5) / 1e9
        row: dict = {"round": i, "loadavg_1m": os.getloadavg()[0]}
        for (key, bs), n in runs.items():
            be, encs, ops = models[key]
            sec = timed(lambda: be.run(encs[bs]), n)
            row[f"{key}_b{bs}_ms"] = 1000 * sec
            row[f"{key}_b{bs}_gops"] = ops * bs / sec / 1e9
        row["peak_gops"] = peak = statistics.mean([peak_before, gemm_ops / timed(gemm_run, 5) / 1e9])  # before and after
        for key in [*a.students, "bert-base"]:
            for bs in (1, 32):
                row[f"{key}_b{bs}_share"] = row[f"{key}_b{bs}_gops"] / peak
                if key != "bert-base":
                    row[f"{key}_b{bs}_speedup_vs_bert_base"] = row[f"bert-base_b{bs}_ms"] / row[f"{key}_b{bs}_ms"]
                    row[f"{key}_b{bs}_speedup_vs_first"] = row[f"{a.students[0]}_b{bs}_ms"] / row[f"{key}_b{bs}_ms"]
        rounds.append(row)
        print(f"round {i + 1:2d}: peak {peak:5.0f} GOPS; " + "; ".join(
            f"{n}: {row[f'{n}_b32_share']:.0%} at batch 32, {row[f'{n}_b1_share']:.0%} at batch 1 ({row[f'{n}_b1_ms']:.2f} ms), "
            f"{row[f'{n}_b1_speedup_vs_bert_base']:.1f}x / {row[f'{n}_b32_speedup_vs_bert_base']:.1f}x BERT-base" for n in a.students), flush=True)
    keys = ["peak_gops", "bert-base_b1_share", "bert-base_b32_share"] + [
        f"{n}_{k}" for n in a.students for k in ("b1_ms", "b32_ms", "b1_share", "b32_share", "b1_speedup_vs_bert_base",
                                                 "b32_speedup_vs_bert_base", "b1_speedup_vs_first", "b32_speedup_vs_first")]
    summary = {k: quartiles([r[k] for r in rounds]) for k in keys}
    s = summary
    for n in a.students:
        print(f"{n}, median over {a.rounds} rounds: {s[f'{n}_b32_share']['median']:.1%} of the int8 GEMM peak at batch 32 "
              f"(quartiles {s[f'{n}_b32_share']['q1']:.1%}-{s[f'{n}_b32_share']['q3']:.1%}), {s[f'{n}_b1_share']['median']:.1%} at batch 1; "
              f"batch-1 time {s[f'{n}_b1_ms']['median']:.2f} ms; {s[f'{n}_b1_speedup_vs_bert_base']['median']:.1f}x / "
              f"{s[f'{n}_b32_speedup_vs_bert_base']['median']:.1f}x the BERT-base int8 (batch 1 / 32); "
              f"{s[f'{n}_b1_speedup_vs_first']['median']:.2f}x / {s[f'{n}_b32_speedup_vs_first']['median']:.2f}x {a.students[0]}")
    print(f"BERT-base int8: {s['bert-base_b32_share']['median']:.1%} of the peak at batch 32")
    write_json(HERE / "results" / a.out, {
        "command": f"python benchmarks/gemm_share.py {' '.join(a.students)} --rounds {a.rounds} --threads {a.threads} --max-length {a.max_length}"
                   + (f" --out {a.out}" if a.out != "gemm_share.json" else ""),
        "students": a.students, "int8": {k: str(v) for k, v in int8.items()}, "anchor": str(bert_int8), "threads": a.threads,
        "max_length": a.max_length, "ops_per_pair": {k: v[2] for k, v in models.items()},
        "note": "batch-1 time is the median of 40 runs of one padded pair per round (the model call, tokenization excluded), "
                "as `qadistill bench` reports p50", "summary": summary, "rounds": rounds}, {"title": TITLE.format(rounds=a.rounds, student=", ".join(a.students)), "order": 151})


if __name__ == "__main__":
    main()
