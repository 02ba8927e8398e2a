"""Peak memory of `qadistill score` and of `qadistill distill --unlabelled` at two pool sizes (issue 20: memory that does
not grow with the pool).

Usage:
  python benchmarks/score_memory.py [--sizes 100000,1000000] [--runs score,rescore,distill] [--compare-with /work/main]

Pools are built from WikiQA train texts (each train question against sentences sampled from all train sentences,
rows grouped by query, seed 0) and written as JSONL. Per size, in a fresh QADISTILL_HOME:
  score    `qadistill score all-minilm-l6-v2 --data POOL` (embeds the pool's texts, writes its score shards; with
           --warm the texts' embeddings are copied in from a warm-up run, so the figure leaves out the teacher model,
           which is the same at every size);
  rescore  then the same with --shard-size 5000 in that home: no shard is found by its key, so every pair is looked up
           in the by-pair index of the 4096-pair shards (the path where the old index held every pair as a Python
           dict entry); with --compare-with DIR, the qadistill in DIR (e.g. the code before this change) runs the
           same with --shard-size 6000;
  distill  in another fresh home, `qadistill distill --teachers all-minilm-l6-v2 --student tiny-random-student
           --unlabelled POOL ...`: TMKD stage 1 streamed over the whole pool (checked: stage1.pairs_seen == pool pairs),
           then a short stage 2 (100 train queries). The student is the 2-layer, hidden-64 test student at max length
           32: this is a memory figure, not an accuracy claim.
Peak RSS is the child's ru_maxrss (os.wait4). Each command runs alone; figures are not disturbed by other CPU load,
wall times are (they are given for context only). Writes benchmarks/results/score_memory.json.
"""

from __future__ import annotations

import argparse
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
REPO = HERE.parent
REPORT = {"title": "Peak memory of score and distill --unlabelled against the pool size", "order": 95,
          "note": "Peak RSS (ru_maxrss) of one process per command, each in a fresh QADISTILL_HOME; the bar is "
                  "1M/100k within 20%. The distill student is a tiny test student: a memory figure, not an accuracy claim."}


def build_pool(path: Path, pairs: int, seed: int, n_sentences: int) -> dict:
    """Each WikiQA train question against sentences sampled from the first ``n_sentences`` distinct train sentences
    (0: all), grouped by query; JSONL."""
    from qadistill.data import load_dataset, unique

    train = load_dataset("wikiqa", "train")
    questions = unique(p.query for p in train.pairs)
    sentences = unique(p.passage for p in train.pairs)
    sentences = sentences[:n_sentences] if n_sentences else sentences
    per_q = -(-pairs // len(questions))
    rng = random.Random(seed)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for q in questions:
            for s in rng.sample(sentences, per_q):
                if n == pairs:
                    break
                fh.write(json.dumps({"query": q, "passage": s}) + "\n")
                n += 1
    return {"pairs": n, "questions": len(questions), "sentences": len(sentences), "per_question": per_q, "seed": seed}


def measure(args: list[str], home: Path, code: Path) -> dict:
    """Run one command in its own process; its peak RSS (MiB), wall seconds, exit status and JSON output."""
    env = {**os.environ, "QADISTILL_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code)}
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(home / "stdout.txt", "w+") as fo, open(home / "stderr.txt", "w+") as fe:
        p = subprocess.Popen([sys.executable, "-m", "qadistill", *args], env=env, stdout=fo, stderr=fe, text=True)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own peak RSS (ru_maxrss, KiB)
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    try:
        res = json.loads(out[out.index("{"):])
    except ValueError:
        res = None
    if rc != 0:
        raise SystemExit(f"{' '.join(args)} failed ({rc}):\n{err[-3000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1), "output": res}


def fresh_home(home: Path, warm: Path | None) -> Path:
    """An empty QADISTILL_HOME, holding only the warm-up's text embeddings when there is one."""
    shutil.rmtree(home, ignore_errors=True)
    if warm is not None:
        shutil.copytree(warm / "cache" / "embeddings", home / "cache" / "embeddings")
    return home


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--runs", default="score,rescore,distill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sentences", type=int, default=0, help="sample from the first N distinct train sentences (0: all)")
    ap.add_argument("--warm", action="store_true", help="embed the texts once (score the largest pool in a warm-up home, "
                    "not measured) and copy those embeddings into each fresh home: the embedding step does not grow with "
                    "the pool, and on a busy machine it dominates the time")
    ap.add_argument("--compare-with", default="", help="a checkout whose qadistill also runs `rescore` (e.g. main)")
    ap.add_argument("--work", default="", help="where pools and homes go (default: a temporary folder, removed)")
    ap.add_argument("--out", default=str(HERE / "results" / "score_memory.json"))
    a = ap.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="score-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    runs, rows, warm = a.runs.split(","), [], None
    sizes = [int(s) for s in a.sizes.split(",")]
    if a.warm:
        warm = work / "home-warm"
        build_pool(work / "pool-warm.jsonl", max(sizes), a.seed, a.sentences)  # every text of every pool
        warm_run = measure(["score", "all-minilm-l6-v2", "--data", str(work / "pool-warm.jsonl"), "--format", "json"], warm, REPO)
    for size in sizes:
        pool = work / f"pool-{size}.jsonl"
        info = build_pool(pool, size, a.seed, a.sentences)
        row = {"pairs": size, "pool": info}
        if "score" in runs or "rescore" in runs:
            home = fresh_home(work / f"home-score-{size}", warm)
            row["score"] = measure(["score", "all-minilm-l6-v2", "--data", str(pool), "--format", "json"], home, REPO)
            if "rescore" in runs:
                row["rescore"] = measure(["score", "all-minilm-l6-v2", "--data", str(pool), "--shard-size", "5000",
                                          "--format", "json"], home, REPO)
                if a.compare_with:
                    row["rescore_compared"] = measure(["score", "all-minilm-l6-v2", "--data", str(pool), "--shard-size", "6000",
                                                       "--format", "json"], home, Path(a.compare_with))
            shutil.rmtree(home, ignore_errors=True)
        if "distill" in runs:
            home = fresh_home(work / f"home-distill-{size}", warm)
            row["distill"] = measure(["distill", "--teachers", "all-minilm-l6-v2", "--student", "tiny-random-student",
                                      "--data", "wikiqa", "--unlabelled", str(pool), "--limit-train-queries", "100",
                                      "--max-length", "32", "--batch-size", "256", "--name", f"mem-{size}", "--format", "json"], home, REPO)
            out = row["distill"].pop("output") or {}
            row["distill"]["stage1_pairs_seen"] = (out.get("stage1") or {}).get("pairs_seen")
            row["distill"]["unlabelled"] = out.get("unlabelled")
            shutil.rmtree(home, ignore_errors=True)
        for k in ("score", "rescore", "rescore_compared"):
            if k in row:
                out = row[k].pop("output") or {}
                row[k].update(pairs=out.get("pairs"), scored=out.get("scored"))
        pool.unlink(missing_ok=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    ratios = {k: round(rows[-1][k]["peak_rss_mib"] / rows[0][k]["peak_rss_mib"], 3)
              for k in ("score", "rescore", "rescore_compared", "distill") if k in rows[0] and len(rows) > 1}
    cmd = "python benchmarks/score_memory.py " + " ".join(sys.argv[1:])
    write_json(Path(a.out), {"command": cmd, "sizes": [r["pairs"] for r in rows], "ratio_largest_over_smallest": ratios,
                             "runs": rows, "loadavg_1m_at_end": os.getloadavg()[0],
                             "embeddings": "copied into each fresh home from a warm-up run" if warm else "computed in each run",
                             "warm_up": ({"peak_rss_mib": warm_run["peak_rss_mib"], "seconds": warm_run["seconds"]} if warm else None),
                             "student_note": "distill uses tiny-random-student (2 layers, hidden 64) at max length 32: "
                                             "a memory figure, not an accuracy claim"}, REPORT)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
