"""Collect benchmarks/results into benchmarks/RESULTS.md (tables only: every number comes from those files, which
record the command that produced them). Nothing is rerun: `python benchmarks/make_results.py`.

The page is driven by the results' own metadata: each result (a file or a folder under results/) carries a report
with its heading, the context note a reader needs and its place on the page (``benchmarks/_report.py`` describes it).
A JSON object holds it under its top-level ``"report"`` key; anything else (.txt, .md, .jsonl, .png, a JSON list, a
folder) has a sidecar ``NAME.meta.json`` next to it, and the page's own title and note are ``results.meta.json``.

How a result is shown follows from what it holds (``KINDS``, matched on its fields): a `qadistill bench` run (run_id,
env, settings, rows), an export (a list of variants with their parity), repeated int8 ratios (a summary of speed-ups),
a folder (its parts, each with its own report), and so on; a report's ``view`` picks another way (``VIEWS``). This file
names no result and holds no heading or history: those live with the results. A result file without a report is still
shown, at the end, under its own command (or its path).
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _report  # noqa: E402

RES = HERE / "results"
IMAGES = {".png", ".svg", ".jpg"}


class Markdown(str):
    """A .md result: shown as it is, not in a code block."""


@dataclass
class Entry:
    """One place on the page: a result, one of its reports, and the results of the same section (itself included)."""

    path: Path
    data: Any
    report: dict
    level: int = 2
    members: list[Entry] = field(default_factory=list)


def load(path: Path) -> Any:
    """A result's content without its report: JSON parsed, JSON lines as a list, text as str, a folder or an image as
    its path."""
    if path.is_dir() or path.suffix in IMAGES:
        return path
    if path.suffix == ".json":
        d = json.loads(path.read_text())
        return {k: v for k, v in d.items() if k != "report"} if isinstance(d, dict) else d
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return Markdown(path.read_text()) if path.suffix == ".md" else path.read_text()


def reports(path: Path) -> list[dict] | None:
    r = _report.read(path)
    return None if r is None else r if isinstance(r, list) else [r]


def table(head: list[str], rows: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows]


def said(r: dict) -> list[str]:
    return [r["note"], ""] if r.get("note") else []


def rows_with(d: Any, *keys: str) -> bool:
    rows = d.get("rows") if isinstance(d, dict) else None
    return bool(rows) and isinstance(rows[0], dict) and all(k in rows[0] for k in keys)


def is_bench(d: Any) -> bool:
    return isinstance(d, dict) and {"run_id", "env", "settings", "rows"} <= d.keys()


# -- one renderer per kind of result: Entry -> the lines under its heading ----------------------------------------------
def cli_startup(e: Entry) -> list[str]:
    d = e.data
    rows = [f"| `{k}` | {v['median_s']*1000:.0f} ms | {v['min_s']*1000:.0f} ms |" for k, v in d["results"].items()]
    return [*said(e.report), f"`{d['command']}` (load average {d['loadavg_1m']:.2f})", "", *table(["command", "median", "min"], rows), ""]


def teachers_eval(e: Entry) -> list[str]:
    d = e.data
    rows = [f"| {r['model']} | {r['wikiqa_map']:.4f} | {r['wikiqa_mrr']:.4f} | {r['trec_map']:.4f} | {r['trec_mrr']:.4f} |" for r in d["rows"]]
    return [*said(e.report), *table(["model", "WikiQA test MAP", "MRR", "TREC-QA dev MAP", "MRR"], rows), "",
            f"Command: `{d['rows'][0]['command']}`", ""]


def eval_rows(e: Entry) -> list[str]:
    """`qadistill eval --format json`: one row per model (the command is the report's: the output does not hold it)."""
    rows = [f"| {r['model']} | {r['map']:.4f} | {r['mrr']:.4f} | {r['p@1']:.4f} | {r['auc']:.4f} |" for r in e.data["rows"]]
    cmd = e.report.get("command") or e.data.get("command")
    return [*said(e.report), *table(["model", "MAP", "MRR", "P@1", "AUC"], rows), "", *([f"Command: `{cmd}`", ""] if cmd else [])]


def crossfit_check(e: Entry) -> list[str]:
    """A cross-fitted teacher as distilled vs its full model alone, per split (``crossfit_check.py``)."""
    d = e.data
    rows = [f"| {r['model']} | {r['split']} | {r['map']:.4f} | {r['mrr']:.4f} | {r['queries']} |" for r in d["rows"]]
    folds = ", ".join(f"{x:.4f}" for x in d["fold_held_out_map"])
    return [*said(e.report), *table(["teacher scored as", "data", "MAP", "MRR", "queries"], rows), "",
            f"`{d['teacher']}`: full model dev MAP {d['full_model_dev_map']:.4f}; each fold model's MAP on the fold it held "
            f"out: {folds}.", "", "Commands: " + "; ".join(f"`{c}`" for c in d["commands"]), ""]


def teach_run(e: Entry) -> list[str]:
    """A `qadistill teach` run's metrics.json: best dev MAP, its history, and what the run cost."""
    d = e.data
    hist = ", ".join(f"step {h['step']}: {h['dev_map']:.4f}" for h in d["history"])
    text = (f"Best dev MAP {d['dev_map']:.4f} at step {d['best_step']} of {d['steps']} (history: {hist}); {d['train_pairs']} train "
            f"pairs (questions with an answer), {d['train_seconds']:.0f} s of training" + (f"; command `{d['command']}`" if d.get("command") else "") + ".")
    return [text + (f" {e.report['note']}" if e.report.get("note") else ""), ""]


def teacher_scoring(e: Entry) -> list[str]:
    d = e.data
    rows = [f"| {r['teacher']} | {r['pairs']} | {r['cold_seconds']:.1f} | {r['pairs_per_s']:.1f} | {r['cached_seconds_median']*1000:.1f} | "
            f"{r['cache_speedup']:.0f}x |" for r in d["rows"]]
    return [*said(e.report), f"`{d['command']}`", "", *table(["teacher", "pairs", "cold s", "pairs/s", "cached ms", "cache speed-up"], rows), ""]


def markdown(e: Entry) -> list[str]:
    return [*said(e.report), e.data, ""]


def text_block(e: Entry) -> list[str]:
    return [*said(e.report), "```", e.data.rstrip(), "```", ""]


def machine_env(e: Entry) -> list[str]:
    """`lscpu` lines and a library-versions line (benchmarks/quiet_cpu_int8.sh): the machine in one sentence."""
    env = e.data.splitlines()
    field_ = lambda key: next((ln.split(":", 1)[1].strip() for ln in env if ln.startswith(key)), "?")  # noqa: E731
    versions = next((line for line in env if "onnxruntime" in line), "")
    return [f"{field_('Model name')}, {field_('CPU(s)')} cores; {versions}." + (f" {e.report['note']}" if e.report.get("note") else ""), ""]


def export(e: Entry) -> list[str]:
    rows = [f"| {r['variant']} | {r['size_bytes']/1e6:.1f} | {r['parity']['max_abs_diff']:.2e} | {r['parity']['map_reference']:.4f} → "
            f"{r['parity']['map_variant']:.4f} ({r['parity']['map_delta_points']:+.2f}) | {'ok' if r['parity']['ok'] else 'FAIL'} | {r['details']} |"
            for r in e.data]
    head = ["variant", "size MB", "max abs logit diff", "MAP torch → variant (dev sample)", "parity", "settings"]
    return [*said(e.report), *table(head, rows), ""]


def op_profile(e: Entry) -> list[str]:
    d = e.data
    rows = [f"| {Path(m['model']).name} | {m['kernel_ms_per_run']:.0f} | " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(m["share"].items())[:6]) + " |"
            for m in d["models"]]
    return [*said(e.report), f"`{d['command']}` (load {d['loadavg_1m']:.2f})", "", *table(["model", "kernel ms / run", "top operators"], rows), ""]


def bench_run(e: Entry) -> list[str]:
    b = e.data
    env, s = b["env"], b["settings"]
    intro = (f"Run {b['run_id']}: {env['cpu']}, {env['cpu_count']} cores, load {env['loadavg_1m']:.2f} → {env.get('loadavg_1m_end', 0):.2f}; "
             f"length {s['max_length']}; {s['data']}/{s['split']}." + (f" {e.report['note']}" if e.report.get("note") else ""))
    rows = [f"| {r['model']} | {r['backend']} | {r['batch_size']} | {r['latency_ms']['p50']:.1f} | {r['latency_ms']['p90']:.1f} | "
            f"{r['latency_ms']['p99']:.1f} | {r['throughput_pairs_s']:.1f} | {r['e2e_throughput_pairs_s']:.1f} | {r['speedup']:.1f}x | "
            f"{r['size_mb']:.0f} | {r['map']:.4f} | {'★' if r.get('pareto') else ''} |"
            for r in sorted(b["rows"], key=lambda r: (r["batch_size"], -r["throughput_pairs_s"]))]
    head = ["model", "backend", "batch", "p50 ms", "p90", "p99", "pairs/s", "e2e pairs/s", "speed-up", "size MB", "MAP", "Pareto"]
    return [intro, "", *table(head, rows), ""]


def cuda_bench(e: Entry) -> list[str]:
    from cuda_summary import table as cuda_table

    return [*said(e.report), *cuda_table([str(e.path)]), ""]


def _speedup_rows(sp: dict, vs_opt: bool) -> list[str]:
    return [f"| {x['max_length']} | {x['batch_size']} | {x['speedup_median']:.2f}x | {', '.join(f'{v:.2f}' for v in x['speedups'])} |"
            + (f" {x['speedup_vs_optimized_median']:.2f}x |" if vs_opt else "") for x in sp["summary"]]


def speedup(e: Entry) -> list[str]:
    """Repeated int8-vs-fp32 ratios (benchmarks/int8_speedup.py); the note says how they were taken."""
    sp = e.data
    vs_opt = "speedup_vs_optimized_median" in sp["summary"][0]
    head = ["length", "batch", "median speed-up", "per run"] + (["vs fp32 O2 (median)"] if vs_opt else [])
    how = f"{sp['threads']} threads" + (f"; {e.report['note']}" if e.report.get("note") else "")
    return [f"`{sp['command']}` ({how})", "", *table(head, _speedup_rows(sp, vs_opt)), ""]


def gemm_share(e: Entry) -> list[str]:
    """benchmarks/gemm_share.py: per student, medians over interleaved rounds (quartiles) of each in-round ratio."""
    d, sm = e.data, e.data["summary"]

    def q(k: str, fmt: str) -> str:
        return f"{format(sm[k]['median'], fmt)} ({format(sm[k]['q1'], fmt)}-{format(sm[k]['q3'], fmt)})"

    rows = [f"| {n} | {q(f'{n}_b32_share', '.1%')} | {q(f'{n}_b1_share', '.1%')} | {sm[f'{n}_b1_ms']['median']:.2f} | "
            f"{q(f'{n}_b1_speedup_vs_bert_base', '.1f')} | {q(f'{n}_b32_speedup_vs_bert_base', '.1f')} | {sm[f'{n}_b32_speedup_vs_first']['median']:.2f}x |"
            for n in d["students"]]
    rows.append(f"| BERT-base int8 (random weights) | {q('bert-base_b32_share', '.1%')} | {q('bert-base_b1_share', '.1%')} | - | - | - | - |")
    return [*said(e.report), f"`{d['command']}`: int8 GEMM peak {q('peak_gops', '.0f')} GOPS; {d['threads']} threads, length "
            f"{d['max_length']}; median over {len(d['rounds'])} rounds (quartiles)", "",
            *table(["student (int8)", "share of peak, batch 32", "batch 1", "batch-1 ms", "x BERT-base int8, batch 1", "batch 32",
                    f"x {d['students'][0]}, batch 32"], rows), ""]


def reshaped_students(e: Entry) -> list[str]:
    """benchmarks/pruned_students.py: test MAP over seeds per recipe, int8 parity of the served seeds, the bench run."""
    d = e.data
    rows = [f"| {k} | {v['seeds']} | {v['test_map_mean']:.4f}" + (f" ± {v['test_map_sd']:.4f}" if v["test_map_sd"] is not None else "")
            + f" | {v['dev_map_mean']:.4f} | {v['parameters']:,} | {d['served'][k]} | "
            f"{d['int8_parity_wikiqa_test'][d['served'][k]]['int8_map_delta_points']:+.2f} |" for k, v in d["summary"].items()]
    bench = [f"| {r['model']} | {r['backend']} | {r['batch_size']} | {r['p50_ms']:.2f} | {r['pairs_per_s']:.1f} | {r['map']:.4f} | "
             f"{'★' if r.get('pareto') else ''} |" for r in d["bench"]["rows"]]
    return [*said(e.report), f"`{d['command']}`", "",
            *table(["student", "seeds", "WikiQA test MAP", "dev MAP", "parameters", "served (best dev)", "int8 Δ MAP points (test)"], rows), "",
            f"`{d['bench']['command']}`", "", *table(["model", "backend", "batch", "p50 ms", "pairs/s", "MAP", "Pareto"], bench), ""]


def head_shapes(e: Entry) -> list[str]:
    """benchmarks/head_shapes.py: one shape's int8 per head count and activation, alternating processes."""
    d = e.data
    rows = [f"| {r['heads']} x {r['head_size']} | {r['activation']} | {r['batch_size']} | {r['p50_ms_median']:.2f} | "
            f"{', '.join(f'{v:.1f}' for v in r['p50_ms_rounds'])} | {r['speedup_vs_12_heads_gelu']:.2f}x |" for r in d["rows"]]
    return [*said(e.report), f"`{d['command']}` (median of per-round p50s)", "",
            *table(["heads", "activation", "batch", "p50 ms", "per round", "vs 12 heads, erf GELU"], rows), ""]


def session_ab(e: Entry) -> list[str]:
    d = e.data
    rows = [f"| {r['variant']} | {r['batch_size']} | {r['setting']} | {r['p50_ms_median']:.2f} | {', '.join(f'{v:.1f}' for v in r['p50_ms_rounds'])} | "
            f"{r['speedup_vs_defaults']:.2f}x |" for r in d["rows"]]
    return [*said(e.report), f"`{d['command']}` ({d['threads']} threads, length {d['max_length']}, median of per-round p50s)", "",
            *table(["variant", "batch", "setting", "p50 ms", "per round", "vs defaults"], rows), ""]


def int8_settings(e: Entry) -> list[str]:
    d = e.data
    rows = [f"| {r['student']} | {r['variant']} | {r['batch_size']} | {r['dev_map']:.4f} | {r['test_map']:.4f} | "
            f"{r.get('test_max_abs_diff', 0):.3f} | {r['size_mb']:.1f} |" for r in d["rows"]]
    return [*said(e.report), f"`{d['command']}` — {d['note']}", "",
            *table(["student", "variant", "batch", "dev MAP", "test MAP", "max |Δlogit| (test)", "MB"], rows), ""]


def image(e: Entry) -> list[str]:
    """An image, linked from the page (benchmarks/RESULTS.md)."""
    link = e.path.relative_to(HERE).as_posix() if e.path.is_relative_to(HERE) else e.path.as_posix()
    return [*said(e.report), f"![{e.report.get('title', e.path.name)}]({link})", ""]


def soup_probe(e: Entry) -> list[str]:
    """``soup_probe.py`` results, one table each: every ingredient arm (with its share when the soup is weighted) and
    their weight average, mean MAP over the seeds per set, then the seeds' soup figures and the command."""
    out = list(said(e.report))
    for m in e.members:
        d = m.data
        sets = list(d["sets"])
        head = ["student", *(f"{' '.join(d['sets'][k])} MAP" for k in sets)]
        share = dict(zip(d["arms"], [w / sum(d["weights"]) for w in d["weights"]])) if d.get("weights") else {}
        name = {k: f"`{k}`" + (f" (share {share[k]:.2f})" if k in share else "") for k in d["arms"]} | {"soup": "**soup**"}
        rows = [f"| {name[k]} | " + " | ".join(f"{d['mean'][k][x]:.4f}" for x in sets) + " |" for k in [*d["arms"], "soup"]]
        seeds = "; ".join(f"seed {r['seed']} " + " / ".join(f"{r['soup'][x]:.4f}" for x in sets) for r in d["seeds"])
        out += [*table(head, rows), "", f"Soup per seed ({' / '.join(sets)}): {seeds}. Command: `{d['command']}`", ""]
    return out


def raw_json(e: Entry) -> list[str]:
    return [*said(e.report), "```json", json.dumps(e.data, indent=2), "```", ""]


def folder(e: Entry) -> list[str]:
    """A folder: its note, then its parts (the results in it, each with its own report), one heading level down."""
    out = said(e.report)
    for part in arrange(e.path, e.level + 1):
        out += render(part)
    return out


# -- views: a result shown another way than its kind's (report "view") ---------------------------------------------------
def int8_vs_fp32_rows(b: dict) -> list[str]:
    """int8 dynamic against ONNX Runtime fp32, per model and batch, inside one bench run."""
    rows = {(r["model"], r["backend"], r["batch_size"]): r for r in b["rows"]}
    out = []
    for (m, be, bs), r in sorted(rows.items()):
        f = rows.get((m, "ort", bs))
        if be == "ort-int8" and f:
            out.append(f"| {b['run_id']} | {m} | {b['settings']['max_length']} | {bs} | {f['latency_ms']['p50']:.1f} | {r['latency_ms']['p50']:.1f} | "
                       f"{f['latency_ms']['p50'] / r['latency_ms']['p50']:.2f}x | {f['latency_ms']['min'] / r['latency_ms']['min']:.2f}x | "
                       f"{b['env']['loadavg_1m']:.2f} |")
    return out


def ratios_at(d: dict, length: int) -> list[tuple[int, float]]:
    """(batch, int8/fp32 p50 ratio) of every run at ``length``: a bench run's pairs of rows, or int8_speedup.py's runs."""
    if is_bench(d):
        by = {(r["backend"], r["batch_size"]): r for r in d["rows"] if r["max_length"] == length}
        return [(bs, by[("ort", bs)]["latency_ms"]["p50"] / r["latency_ms"]["p50"]) for (be, bs), r in sorted(by.items())
                if be == "ort-int8" and ("ort", bs) in by]
    return [(r["batch_size"], r["speedup_p50"]) for r in d.get("runs", []) if r["max_length"] == length]


def int8_vs_fp32(e: Entry) -> list[str]:
    """A section of bench runs shown by their int8/fp32 ratios; then, per batch, the spread of the ratios at the
    report's ``summary_length`` over the members whose report says ``in_summary`` (its ``summary`` opens the line)."""
    rows = [row for m in e.members if is_bench(m.data) for row in int8_vs_fp32_rows(m.data)]
    if not rows:
        return []
    head = ["run", "model", "length", "batch", "fp32 p50 ms", "int8 p50 ms", "speed-up (p50)", "speed-up (min)", "load at start"]
    ratios: dict[int, list[float]] = {}
    for m in e.members:
        for bs, x in ratios_at(m.data, e.report.get("summary_length", 0)) if m.report.get("in_summary") else []:
            ratios.setdefault(bs, []).append(x)
    summary = [f"{e.report.get('summary', 'Summary')}: batch {bs}: median {statistics.median(v):.2f}x over {len(v)} runs, lowest {min(v):.2f}x, "
               f"highest {max(v):.2f}x." for bs, v in sorted(ratios.items())]
    return [*table(head, rows), "", *summary, "", *said(e.report)]


# -- which renderer: the first kind whose test the data passes -----------------------------------------------------------
KINDS: list[tuple[str, Callable[[Any], bool], Callable[[Entry], list[str]]]] = [
    ("folder", lambda d: isinstance(d, Path) and d.is_dir(), folder),
    ("image", lambda d: isinstance(d, Path), image),
    ("markdown", lambda d: isinstance(d, Markdown), markdown),
    ("machine env (lscpu)", lambda d: isinstance(d, str) and "Model name:" in d and "CPU(s):" in d, machine_env),
    ("text", lambda d: isinstance(d, str), text_block),
    ("cli start-up", lambda d: isinstance(d, dict) and isinstance(d.get("results"), dict) and "loadavg_1m" in d, cli_startup),
    ("teachers on two datasets", lambda d: rows_with(d, "wikiqa_map", "trec_map"), teachers_eval),
    ("cross-fitted teacher check", lambda d: rows_with(d, "split", "map", "mrr") and "fold_held_out_map" in d, crossfit_check),
    ("qadistill eval", lambda d: rows_with(d, "map", "mrr", "p@1", "auc"), eval_rows),
    ("qadistill teach", lambda d: isinstance(d, dict) and {"dev_map", "best_step", "history"} <= d.keys(), teach_run),
    ("teacher scoring", lambda d: rows_with(d, "cache_speedup"), teacher_scoring),
    ("export", lambda d: isinstance(d, list) and bool(d) and isinstance(d[0], dict) and {"variant", "parity"} <= d[0].keys(), export),
    ("int8 speed-up repeats", lambda d: isinstance(d, dict) and isinstance(d.get("summary"), list) and bool(d["summary"])
     and "speedup_median" in d["summary"][0], speedup),
    ("int8 GEMM peak share, interleaved rounds", lambda d: isinstance(d, dict) and {"students", "rounds", "summary"} <= d.keys(), gemm_share),
    ("reshaped students", lambda d: isinstance(d, dict) and {"students", "served", "int8_parity_wikiqa_test", "bench"} <= d.keys(), reshaped_students),
    ("operator profile", lambda d: isinstance(d, dict) and "models" in d, op_profile),
    ("bench on a GPU", lambda d: is_bench(d) and d["settings"].get("device") != "cpu", cuda_bench),
    ("bench", is_bench, bench_run),
    ("session settings A/B", lambda d: rows_with(d, "speedup_vs_defaults"), session_ab),
    ("head shapes", lambda d: rows_with(d, "heads", "activation", "p50_ms_median"), head_shapes),
    ("int8 settings", lambda d: rows_with(d, "variant", "dev_map", "test_map"), int8_settings),
    ("soup probe", lambda d: isinstance(d, dict) and {"arms", "seeds", "mean", "sets"} <= d.keys(), soup_probe),
    ("anything else", lambda d: True, raw_json),
]
VIEWS: dict[str, Callable[[Entry], list[str]]] = {"raw": raw_json, "text": text_block, "int8-vs-fp32": int8_vs_fp32}


def renderer(e: Entry) -> Callable[[Entry], list[str]]:
    if e.report.get("view"):
        return VIEWS[e.report["view"]]
    return next(fn for _, test, fn in KINDS if test(e.data))


def render(e: Entry) -> list[str]:
    body = renderer(e)(e)
    if not body:
        return []
    return ([f"{'#' * e.level} {e.report['title']}", ""] if e.report.get("title") else []) + body


# -- the page ------------------------------------------------------------------------------------------------------------
def arrange(where: Path, level: int) -> list[Entry]:
    """The results directly in ``where`` that have a report, in their reports' order; a section is one entry (its
    lowest-ordered report) holding its members. A report with order null is not shown on its own."""
    entries = [Entry(p, None, r, level) for p in sorted(where.iterdir()) if not p.name.startswith(".") and not _report.is_sidecar(p)
               for r in reports(p) or []]
    placed = sorted((e for e in entries if "order" not in e.report or e.report["order"] is not None),
                    key=lambda e: (e.report.get("order") is None, e.report.get("order") or 0, e.path.name))
    out, lead = [], {}
    for e in placed:
        e.data = load(e.path)
        sec = e.report.get("section")
        if sec is not None and sec in lead:
            lead[sec].members.append(e)
            continue
        e.members = [e]
        if sec is not None:
            lead[sec] = e
        out.append(e)
    return out


def unreported(res: Path) -> list[str]:
    """Result files with no report (anywhere under ``res``): shown as they are, under their command or their path."""
    out = []
    for p in sorted(res.rglob("*")):
        if p.is_dir() or p.name.startswith(".") or _report.is_sidecar(p) or reports(p) is not None:
            continue
        d = load(p)
        cmd = d.get("command") if isinstance(d, dict) else None
        view = "raw" if isinstance(d, (dict, list)) else "text" if isinstance(d, str) else None
        out += render(Entry(p, d, {"title": f"`{cmd}`" if cmd else p.relative_to(res).as_posix(), "view": view}))
    return out


def page(res: Path = RES) -> list[str]:
    r = (reports(res) or [{}])[0]
    top = Entry(res, res, {"title": r.get("title", res.name), "note": r.get("note")}, level=1)
    return render(top) + unreported(res)


def main() -> None:
    out = page(RES)
    (HERE / "RESULTS.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
