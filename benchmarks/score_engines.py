"""`qadistill score` three ways on one pool: one process, `torchrun --nproc_per_node P`, and `--engine ray --workers P`.

Usage:
  python benchmarks/score_engines.py [--pairs 100000] [--procs 2] [--teacher all-minilm-l6-v2] [--shard-size 4096]
                                     [--cross-pairs 10000] [--out benchmarks/results/score_engines.json]

The pool: WikiQA train (the data dir), each question against its own candidate sentences and then sentences sampled
from the other questions' (seed --seed), grouped by question, --pairs pairs in all, written as JSONL.

Each run is one `qadistill score` subprocess in a fresh QADISTILL_HOME, so nothing is cached: the bi-encoder's
calibration split (WikiQA dev, 2,733 pairs, cut into shards of --shard-size too) is scored in every run. Wall seconds run from the start of the command
to its exit (Python start, model load, Ray's cluster start included): what a user waits for. Threads: the one process
gets every core (OMP_NUM_THREADS = cores); torchrun's processes cores / P each; Ray's actors get cores / P CPUs, and Ray
sets their OMP_NUM_THREADS to that. Reported: wall seconds and pairs/s (pool pairs / wall seconds) of each run, the
seconds the command itself reports, the pairs the reporting process scored (under torchrun: process 0's share), and
the max |diff| of the raw scores between every two runs (from their manifests).

With --cross-pairs N > 0: the same on the first N pairs with a cross-encoder, to compare P processes x 1 thread with
1 process x P threads. The cross-encoder is MiniLM-L6 (the packaged all-minilm-l6-v2 weights) with a freshly
initialised one-logit head (seed 0): a MiniLM-L6 cross-encoder's compute, meaningless scores; only its throughput and
the engines' agreement are reported.

Needs torchrun (torch) and, for the Ray runs, ray[data] (`pip install 'qadistill[ray]'`; without it those runs are
recorded as skipped). Quote ratios from one run: the machine may be shared (the load average is recorded).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent
CROSS_NAME = "minilm-l6-cross-untrained"


def build_pool(n: int, seed: int, path: Path) -> int:
    """WikiQA train questions, each against its own candidates then sampled sentences of other questions; returns the
    number of questions."""
    from qadistill.data import load_dataset

    ds = load_dataset("wikiqa", "train")
    by_q: dict[str, tuple[str, list]] = {}
    for p in ds.pairs:
        by_q.setdefault(p.query_id, (p.query, []))[1].append((p.passage_id, p.passage, p.label))
    sentences = sorted({(p.passage_id, p.passage) for p in ds.pairs})
    rng = random.Random(seed)
    qids = sorted(by_q)
    per, extra = divmod(n, len(qids))
    with open(path, "w") as fh:
        for j, qid in enumerate(qids):
            k = per + (1 if j < extra else 0)
            query, own = by_q[qid]
            chosen = own[:k]
            seen = {pid for pid, _, _ in own}
            while len(chosen) < k:
                pid, text = rng.choice(sentences)
                if pid not in seen:
                    seen.add(pid)
                    chosen.append((pid, text, 0))
            for pid, text, label in chosen:
                fh.write(json.dumps({"query_id": qid, "query": query, "passage_id": pid, "passage": text, "label": label}) + "\n")
    return len(qids)


def make_cross(folder: Path) -> Path:
    """MiniLM-L6 with a new one-logit head (seed 0), saved as a cross-encoder folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from qadistill.registry import Registry
    from qadistill.sources import resolve_source
    from qadistill.store import Store

    base = resolve_source(Registry(store=Store.open()).recipe("all-minilm-l6-v2", "teacher").source)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(folder))
    recipe = folder.parent / f"{CROSS_NAME}.toml"
    recipe.write_text(f'kind = "teacher"\nname = "{CROSS_NAME}"\narchitecture = "cross-encoder"\nmax_length = 128\n'
                      f'source = {{ type = "local", path = "{folder}" }}\n')
    return recipe


def _env(home: Path, threads: int | None, shard_size: int) -> dict:
    env = {**os.environ, "QADISTILL_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "QADISTILL_SHARD_PAIRS": str(shard_size)}  # the calibration split is cut like the pool
    env.pop("QADISTILL_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run(engine: str, teacher: str, pool: Path, procs: int, args, tmp: Path, recipe: Path | None) -> dict:
    """One `qadistill score` in a fresh home: engine one | torchrun | ray."""
    home = Path(tempfile.mkdtemp(prefix=f"home-{engine}-", dir=tmp))
    cores = os.cpu_count() or 1
    threads = {"one": cores, "torchrun": max(1, cores // procs), "ray": None}[engine]
    env = _env(home, threads, args.shard_size)
    if recipe is not None:
        subprocess.run([sys.executable, "-m", "qadistill", "zoo", "add", str(recipe)], env=env, check=True, capture_output=True)
    score = ["score", teacher, "--data", str(pool), "--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size), "--format", "json"]
    cmd = {"one": [sys.executable, "-m", "qadistill", *score],
           "torchrun": [shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun", "--nproc_per_node", str(procs), "-m", "qadistill", *score],
           "ray": [sys.executable, "-m", "qadistill", *score, "--engine", "ray", "--workers", str(procs)]}[engine]
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{engine} run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout[out.stdout.index("{"):])
    pairs = res["pairs"]
    row = {"engine": engine, "processes": procs if engine != "one" else 1, "threads_per_process": threads or max(1, cores // procs),
           "wall_seconds": round(wall, 2), "pairs_per_s": round(pairs / wall, 1), "command_seconds": round(res["seconds"], 2),
           "scored": res["scored"], "command": " ".join(["python" if c == sys.executable else ("torchrun" if c.endswith("torchrun") else c) for c in cmd])}
    print(f"  {engine:9s} {row['processes']} x {row['threads_per_process']} threads: {wall:7.1f}s wall  {row['pairs_per_s']:7.1f} pairs/s", flush=True)
    return {**row, "_manifest": res["manifest"]}


def compare(rows: list[dict]) -> dict:
    """max |diff| of the raw scores between every two runs."""
    import numpy as np

    from qadistill.scoring import manifest_scores

    scores = {r["engine"]: manifest_scores(r.pop("_manifest")) for r in rows}
    out = {}
    for a, b in itertools.combinations(scores, 2):
        out[f"{a} vs {b}"] = max(float(np.abs(scores[a][k] - scores[b][k]).max()) for k in scores[a])
    return out


def _ray_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import ray.data"], capture_output=True)
    return probe.returncode == 0


def measure(teacher: str, pool: Path, pairs: int, args, tmp: Path, recipe: Path | None) -> dict:
    engines = ["one", "torchrun"] + (["ray"] if _ray_available() else [])
    print(f"{teacher}: {pairs} pairs", flush=True)
    rows = [run(e, teacher, pool, args.procs, args, tmp, recipe) for e in engines]
    return {"teacher": teacher, "pairs": pairs, "runs": rows, "max_abs_diff": compare(rows),
            "skipped": [] if "ray" in engines else ["ray: ray[data] is not installed in this Python (pip install 'qadistill[ray]')"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100000)
    ap.add_argument("--procs", type=int, default=2, help="torchrun processes and Ray workers")
    ap.add_argument("--teacher", default="all-minilm-l6-v2")
    ap.add_argument("--shard-size", type=int, default=0, help="0: pairs / (8 x procs), at most 4096, so every engine has shards to share")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--cross-pairs", type=int, default=10000, help="0: no cross-encoder runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bi-encoder", action="store_true", help="only the cross-encoder runs (processes x threads)")
    ap.add_argument("--out", default=str(HERE / "results" / "score_engines.json"))
    args = ap.parse_args()
    args.shard_size = args.shard_size or max(1, min(4096, args.pairs // (8 * args.procs)))
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="score-engines-") as d:
        tmp = Path(d)
        pool = tmp / "pool.jsonl"
        questions = build_pool(args.pairs, args.seed, pool)
        sections = {} if args.no_bi_encoder else {"bi_encoder": measure(args.teacher, pool, args.pairs, args, tmp, None)}
        if args.cross_pairs > 0:
            small = tmp / "pool-cross.jsonl"
            with open(pool) as src, open(small, "w") as dst:
                dst.writelines(itertools.islice(src, args.cross_pairs))
            recipe = make_cross(tmp / CROSS_NAME)
            sections["cross_encoder"] = measure(CROSS_NAME, small, min(args.cross_pairs, args.pairs), args, tmp, recipe)
            sections["cross_encoder"]["note"] = "MiniLM-L6 with an untrained one-logit head: throughput and agreement only"
    cmd = "python benchmarks/score_engines.py " + " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items() if k != "out" and v is not False)
    size = f"{args.cross_pairs:,} pairs, cross-encoder" if args.no_bi_encoder else f"{args.pairs:,} pairs"
    report = {"title": f"qadistill score: one process, torchrun and Ray ({size})", "order": 95 if not args.no_bi_encoder else 96,
              "note": "Each run a fresh QADISTILL_HOME, wall-clock from start to exit (model load, Ray start and the "
                      "bi-encoder's calibration split included); one run each on a shared machine."}
    write_json(Path(args.out), {"command": cmd, "pool": {"source": "wikiqa train", "pairs": args.pairs, "questions": questions, "seed": args.seed},
                                "cpu_count": os.cpu_count(), "loadavg_1m_at_start": load0, "loadavg_1m_at_end": os.getloadavg()[0],
                                "date": time.strftime("%Y-%m-%d %H:%M"), **sections}, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
