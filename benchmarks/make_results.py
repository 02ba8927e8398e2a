"""Collect benchmarks/results into benchmarks/RESULTS.md (tables only: every number comes from those files, which
record the command that produced them).

How a file is shown follows from what it holds: a `qadistill bench` run (run_id, env, settings, rows), an export
(a list of variants with their parity), repeated int8 ratios (a summary of speed-ups), and so on (``KINDS``, matched on
the file's fields). ``SECTIONS`` is the page's order: which file, and the heading and context a reader needs that the
file cannot say about itself (what was the default when it was measured). A result file that ``SECTIONS`` does not
name is still shown, at the end, under its own command. Nothing is rerun: `python benchmarks/make_results.py`.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RES = HERE / "results"

HEADER = ["# Measured results", "", "Machine: the development box (2 CPU cores, AMD/Intel x86 with avx512_vnni, no GPU) unless a",
          "section says otherwise. It is shared and noisy: speeds are medians and ratios measured in one run.", ""]
INT8_HISTORY = ["Before the current int8 (O2-fused graph, denormals flushed, SkipLayerNorm unfused), int8",
                "quantized the plain graph and stayed short of 2x at length 128: the fp32 softmax was slow on denormals from the",
                "padding mask, and ONNX Runtime fused Add + LayerNorm into a slower SkipLayerNormalization kernel",
                "(`benchmarks/ort_session_ab.py`, `benchmarks/skip_layernorm.py`). An earlier ad-hoc try of the fused graph",
                "without those two settings measured no gain (1.76x vs 1.75x)."]
DISTILL_INTRO = ["Students: `minilm-l3-student`, 1 epoch, max length 64, batch 32, lr 1e-4, T=2, alpha=0.5; teachers",
                 "all-mpnet-base-v2 + all-minilm-l6-v2 (zero-shot, calibrated). Mean ± std over seeds where several.", ""]
CUDA_INTRO = ("One call per card; compare rows only within one table (the same card, the same run). Rows named \"random "
              "weights: speed only\" are the teachers' architectures built from their configs with random weights (the "
              "weights could not travel under the 64 MiB transfer limit): they time the architecture and nothing else. "
              "ONNX Runtime on CUDA was not measured: that image's onnxruntime is the CPU build ")


def load(name: str):
    p = RES / name
    if not p.exists():
        return None
    return json.loads(p.read_text()) if p.suffix == ".json" else p.read_text()


def table(head: list[str], rows: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows]


# -- one renderer per kind of result file: (its data, the section's words) -> lines ------------------------------------
def cli_startup(d, title: str) -> list[str]:
    rows = [f"| `{k}` | {v['median_s']*1000:.0f} ms | {v['min_s']*1000:.0f} ms |" for k, v in d["results"].items()]
    return [title, "", f"`{d['command']}` (load average {d['loadavg_1m']:.2f})", "", *table(["command", "median", "min"], rows), ""]


def teachers_eval(d, title: str) -> list[str]:
    rows = [f"| {r['model']} | {r['wikiqa_map']:.4f} | {r['wikiqa_mrr']:.4f} | {r['trec_map']:.4f} | {r['trec_mrr']:.4f} |" for r in d["rows"]]
    return [title, "", *table(["model", "WikiQA test MAP", "MRR", "TREC-QA dev MAP", "MRR"], rows), "",
            f"Command: `{d['rows'][0]['command']}`", ""]


def eval_rows(d, title: str, command: str) -> list[str]:
    rows = [f"| {r['model']} | {r['map']:.4f} | {r['mrr']:.4f} | {r['p@1']:.4f} | {r['auc']:.4f} |" for r in d["rows"]]
    return [title, "", *table(["model", "MAP", "MRR", "P@1", "AUC"], rows), "", f"Command: `{command}`", ""]


def teach_run(d, title: str, style: str, note: str = "") -> list[str]:
    """A `qadistill teach` run's metrics.json; ``style``: how much of its history the section shows."""
    if style == "history":
        hist = ", ".join(f"step {h['step']}: {h['dev_map']:.4f}" for h in d["history"])
        text = f"Best dev MAP {d['dev_map']:.4f} (history: {hist}); {d['train_pairs']} train pairs (questions with an answer), {d['train_seconds']:.0f} s of training."
    elif style == "best-and-history":
        hist = ", ".join(f"{h['step']}: {h['dev_map']:.4f}" for h in d["history"])
        text = (f"Best dev MAP {d['dev_map']:.4f} at step {d['best_step']} of {d['steps']} (history: {hist}); "
                f"{d['train_seconds']:.0f} s of training. {note}")
    else:
        text = (f"Best dev MAP {d['dev_map']:.4f} at step {d['best_step']} of {d['steps']}; {d['train_seconds']:.0f} s of training; "
                f"command `{d.get('command', '')}`. {note}")
    return [title, "", text, ""]


def teacher_scoring(d, title: str) -> list[str]:
    rows = [f"| {r['teacher']} | {r['pairs']} | {r['cold_seconds']:.1f} | {r['pairs_per_s']:.1f} | {r['cached_seconds_median']*1000:.1f} | "
            f"{r['cache_speedup']:.0f}x |" for r in d["rows"]]
    return [title, "", f"`{d['command']}`", "", *table(["teacher", "pairs", "cold s", "pairs/s", "cached ms", "cache speed-up"], rows), ""]


def markdown(d: str, title: str, intro: list[str]) -> list[str]:
    return [title, "", *intro, d, ""]


def export(d, title: str) -> list[str]:
    rows = [f"| {r['variant']} | {r['size_bytes']/1e6:.1f} | {r['parity']['max_abs_diff']:.2e} | {r['parity']['map_reference']:.4f} → "
            f"{r['parity']['map_variant']:.4f} ({r['parity']['map_delta_points']:+.2f}) | {'ok' if r['parity']['ok'] else 'FAIL'} | {r['details']} |" for r in d]
    return [title, "", *table(["variant", "size MB", "max abs logit diff", "MAP torch → variant (dev sample)", "parity", "settings"], rows), ""]


def int8_vs_fp32_rows(b) -> list[str]:
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


def since_fused_note(bench: str, repeats: tuple[str, ...]) -> list[str]:
    """Every length-128 int8/fp32 ratio measured since the current int8 default: the full bench run and the repeats."""
    ratios: dict[int, list[float]] = {}
    b = load(bench)
    if b:
        by = {(r["backend"], r["batch_size"]): r for r in b["rows"] if r["max_length"] == 128}
        for bs in (1, 32):
            if ("ort", bs) in by and ("ort-int8", bs) in by:
                ratios.setdefault(bs, []).append(by[("ort", bs)]["latency_ms"]["p50"] / by[("ort-int8", bs)]["latency_ms"]["p50"])
    for f in repeats:
        for r in (load(f) or {}).get("runs", []):
            if r["max_length"] == 128:
                ratios.setdefault(r["batch_size"], []).append(r["speedup_p50"])
    return [f"Since the current int8 default, every length-128 run (the full bench run above and the repeated runs below): batch {bs}: "
            f"median {statistics.median(v):.2f}x over {len(v)} runs, lowest {min(v):.2f}x, highest {max(v):.2f}x." for bs, v in sorted(ratios.items())]


def int8_ratios(files: tuple[str, ...], title: str, repeats: tuple[str, ...]) -> list[str]:
    rows = [row for f in files if (b := load(f)) for row in int8_vs_fp32_rows(b)]
    if not rows:
        return []
    head = ["run", "model", "length", "batch", "fp32 p50 ms", "int8 p50 ms", "speed-up (p50)", "speed-up (min)", "load at start"]
    return [title, "", *table(head, rows), "", *since_fused_note(files[0], repeats), "", *INT8_HISTORY, ""]


def op_profile(d, title: str) -> list[str]:
    rows = [f"| {Path(m['model']).name} | {m['kernel_ms_per_run']:.0f} | " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(m["share"].items())[:6]) + " |"
            for m in d["models"]]
    return [title, "", f"`{d['command']}` (load {d['loadavg_1m']:.2f})", "", *table(["model", "kernel ms / run", "top operators"], rows), ""]


def bench_run(b, title: str) -> list[str]:
    e, s = b["env"], b["settings"]
    intro = (f"Run {b['run_id']}: {e['cpu']}, {e['cpu_count']} cores, load {e['loadavg_1m']:.2f} → {e.get('loadavg_1m_end', 0):.2f}; "
             f"length {s['max_length']}; {s['data']}/{s['split']}. Plot: `results/bench_cpu.png`.")
    rows = [f"| {r['model']} | {r['backend']} | {r['batch_size']} | {r['latency_ms']['p50']:.1f} | {r['latency_ms']['p90']:.1f} | "
            f"{r['latency_ms']['p99']:.1f} | {r['throughput_pairs_s']:.1f} | {r['e2e_throughput_pairs_s']:.1f} | {r['speedup']:.1f}x | "
            f"{r['size_mb']:.0f} | {r['map']:.4f} | {'★' if r.get('pareto') else ''} |"
            for r in sorted(b["rows"], key=lambda r: (r["batch_size"], -r["throughput_pairs_s"]))]
    head = ["model", "backend", "batch", "p50 ms", "p90", "p99", "pairs/s", "e2e pairs/s", "speed-up", "size MB", "MAP", "Pareto"]
    return [title, "", intro, "", *table(head, rows), ""]


def _speedup_rows(sp, vs_opt: bool) -> list[str]:
    return [f"| {x['max_length']} | {x['batch_size']} | {x['speedup_median']:.2f}x | {', '.join(f'{v:.2f}' for v in x['speedups'])} |"
            + (f" {x['speedup_vs_optimized_median']:.2f}x |" if vs_opt else "") for x in sp["summary"]]


def speedup(sp, label: str) -> list[str]:
    """Repeated int8-vs-fp32 ratios (benchmarks/int8_speedup.py)."""
    vs_opt = "speedup_vs_optimized_median" in sp["summary"][0]
    head = ["length", "batch", "median speed-up", "per run"] + (["vs fp32 O2 (median)"] if vs_opt else [])
    return [f"## int8 dynamic vs ONNX Runtime fp32, repeated runs: {label}", "", f"`{sp['command']}` ({sp['threads']} threads; each ratio "
            "is taken inside one `qadistill bench` run, padded to the length; the spread between runs is this machine's noise)", "",
            *table(head, _speedup_rows(sp, vs_opt)), ""]


def quiet_cpu(folder: str, title: str) -> list[str]:
    sp, env = load(f"{folder}/int8_speedup_quiet.json"), (load(f"{folder}/env.txt") or "").splitlines()
    if not sp:
        return []
    field = lambda key: next((ln.split(":", 1)[1].strip() for ln in env if ln.startswith(key)), "?")  # noqa: E731
    intro = (f"{field('Model name')}, {field('CPU(s)')} cores; {next((line for line in env if 'onnxruntime' in line), '')}. The student's "
             f"architecture with random weights (speed only), exported there by `qadistill export`; `{sp['command']}` (2 threads of 16, on "
             "a freshly started machine running no other job).")
    head = ["length", "batch", "median speed-up", "per run", "vs fp32 O2 (median)"]
    return [title, "", intro, "", *table(head, _speedup_rows(sp, True)), "", "The same machine's SkipLayerNormalization kernel check:", "",
            "```", (load(f"{folder}/skip_layernorm_quiet.txt") or "").rstrip(), "```", ""]


def session_ab(d, title: str) -> list[str]:
    rows = [f"| {r['variant']} | {r['batch_size']} | {r['setting']} | {r['p50_ms_median']:.2f} | {', '.join(f'{v:.1f}' for v in r['p50_ms_rounds'])} | "
            f"{r['speedup_vs_defaults']:.2f}x |" for r in d["rows"]]
    return [title, "", f"`{d['command']}` ({d['threads']} threads, length {d['max_length']}, median of per-round p50s)", "",
            *table(["variant", "batch", "setting", "p50 ms", "per round", "vs defaults"], rows), ""]


def text_block(d: str, title: str) -> list[str]:
    return [title, "", "```", d.rstrip(), "```", ""]


def int8_settings(d, label: str) -> list[str]:
    rows = [f"| {r['student']} | {r['variant']} | {r['batch_size']} | {r['dev_map']:.4f} | {r['test_map']:.4f} | "
            f"{r.get('test_max_abs_diff', 0):.3f} | {r['size_mb']:.1f} |" for r in d["rows"]]
    return [f"## int8 settings on dev (chosen there) and test: {label}", "", f"`{d['command']}` — {d['note']}", "",
            *table(["student", "variant", "batch", "dev MAP", "test MAP", "max |Δlogit| (test)", "MB"], rows), ""]


def cuda(folder: str, title: str, runs: tuple[tuple[str, str], ...]) -> list[str]:
    if not (RES / folder).exists():
        return []
    sys.path.insert(0, str(HERE))
    from cuda_summary import table as cuda_table

    ort = (load(f"{folder}/ort_cuda_h100.txt") or "").splitlines()
    out = [title, "", CUDA_INTRO + f"(`{ort[0] if ort else ''}`).", ""]
    for f, sub in runs:
        if (RES / folder / f).exists():
            out += [f"### {sub}", ""] + cuda_table([str(RES / folder / f)]) + [""]
    return out


def raw_json(d, title: str) -> list[str]:
    return [title, "", "```json", json.dumps(d, indent=2), "```", ""]


# -- the page: (renderer, file or None, the section's words) ------------------------------------------------------------
INT8_REPEATS = ("int8_speedup_fused.json", "int8_speedup_fused_len128.json")
SECTIONS = [
    (cli_startup, "cli_startup.json", {"title": "## CLI start-up"}),
    (teachers_eval, "teachers_eval_pair.json", {"title": "## The two distillation teachers and their ensemble (mean calibrated logit)"}),
    (teachers_eval, "teachers_eval.json", {"title": "## All teachers, with the fine-tuned cross-encoder (gold + mpnet soft target, chosen on dev MAP .7805), and their ensemble"}),
    (teachers_eval, "teachers_eval_cross_gold_only.json", {"title": "## The same with the gold-only fine-tuned cross-encoder (4 epochs, dev MAP .7703): a tie with zero-shot L6 on WikiQA test"}),
    (eval_rows, "zeroshot_wikiqa_test.json", {"title": "## Zero-shot packaged encoders on WikiQA test (237 questions with a correct and a wrong candidate)",
                                              "command": "qadistill eval --teachers all-mpnet-base-v2,all-minilm-l6-v2,paraphrase-minilm-l3-v2 --data wikiqa --split test --format json"}),
    (teach_run, "teach_minilm_l6_cross_wikiqa.json", {"title": "## `qadistill teach minilm-l6-cross-wikiqa --data wikiqa --epochs 2`", "style": "history"}),
    (teach_run, "teach_minilm_l6_cross_wikiqa_e4.json", {"title": "## `qadistill teach minilm-l6-cross-wikiqa --data wikiqa --epochs 4 --eval-every 271 --patience 4`",
                                                         "style": "best-and-history", "note": "Its test figures are in the gold-only teachers table above."}),
    (teach_run, "teach_minilm_l6_cross_wikiqa_distill.json", {"title": "## `qadistill teach ... --distill-from all-mpnet-base-v2` (gold + mpnet soft target)", "style": "best",
                                                              "note": "Higher dev MAP than the gold-only run, so this is the registered `minilm-l6-cross-wikiqa`; "
                                                                      "its test figures are in the first all-teachers table above."}),
    (teacher_scoring, "teacher_scoring.json", {"title": "## Teacher scoring throughput and the logit cache"}),
    (markdown, "distill_table.md", {"title": "## Distillation (WikiQA train → student of 17.4M parameters, 3 layers)", "intro": DISTILL_INTRO}),
    (export, "export_two_stage.json", {"title": "## Export of the two-stage MKDM student (`qadistill export bench-two-stage-s1 --all`)"}),
    (export, "export_mkdm.json", {"title": "## Export of the one-stage MKDM student (`qadistill export bench-mkdm-s1 --all`, static int8 then quantized every op with minmax)"}),
    (int8_ratios, None, {"files": ("bench_cpu.json", "bench_int8_len64.json"), "repeats": INT8_REPEATS,
                         "title": "## int8 dynamic vs ONNX Runtime fp32 (same run, 2 threads, inputs padded to the length)"}),
    (op_profile, "ort_op_profile.json", {"title": "## Where ONNX Runtime spends its time (per-operator share of kernel time)"}),
    (bench_run, "bench_cpu.json", {"title": "## `qadistill bench` on this CPU"}),
    (speedup, "int8_speedup_fused_len128.json", {"label": "the current default (O2-fused graph, denormals flushed, SkipLayerNorm unfused), length 128, 5 runs"}),
    (speedup, "int8_speedup_fused.json", {"label": "the current default, lengths 64 and 128"}),
    (speedup, "int8_speedup_fused_no_daz.json", {"label": "O2-fused graph, before denormal flushing"}),
    (speedup, "int8_speedup.json", {"label": "plain graph, weight MatMuls only (before)"}),
    (speedup, "int8_speedup_all_matmuls.json", {"label": "plain graph, every MatMul quantized (before)"}),
    (speedup, "int8_speedup_1thread.json", {"label": "plain graph, every MatMul quantized, 1 thread"}),
    (quiet_cpu, None, {"folder": "quiet_cpu", "title": "## int8 dynamic vs ONNX Runtime fp32 on a quiet CPU (a lent GPU machine's CPU; `bash benchmarks/quiet_cpu_int8.sh`)"}),
    (session_ab, "ort_session_ab.json", {"title": "## ONNX Runtime session settings on the CPU (alternating processes)"}),
    (text_block, "skip_layernorm.txt", {"title": "## Fused SkipLayerNormalization vs Add + Add + LayerNormalization (ONNX Runtime CPU kernels)"}),
    (int8_settings, "int8_settings_fused.json", {"label": "plain vs O2-fused graph; the current default is O2 per-tensor"}),
    (int8_settings, "int8_settings_weights_only.json", {"label": "plain graph, weight MatMuls only: attention products kept fp32 (before)"}),
    (int8_settings, "int8_settings.json", {"label": "plain graph, every MatMul quantized (before 2026-11-26 15:40)"}),
    (cuda, None, {"folder": "cuda", "title": "## CUDA (lent GPU machines; `bash benchmarks/cuda_bench.sh`)", "runs": (
        ("bench_cuda_h100_student.json", "The student on an H100, every PyTorch CUDA backend, WikiQA test MAP measured per backend (plot: `results/cuda/bench_cuda_h100_student.png`)"),
        ("bench_cuda_h200_student_vs_mpnet.json", "The student against the mpnet architecture, same run, on an H200 (no accuracy pass)"),
        ("bench_cuda_h200_shapes.json", "Teacher architectures on an H200 (speed only)"))}),
    (raw_json, "bench_quick_int8_vs_fp32.json", {"title": "## Quick bench: MKDM student, ONNX Runtime fp32 vs int8 dynamic (no accuracy pass; load average was high)"}),
    (raw_json, "harness_overhead.json", {"title": "## Harness overhead"}),
    (raw_json, "rank_latency.json", {"title": "## `qadistill rank` wall time"}),
    (raw_json, "rank_vs_eval_torch.json", {"title": "## rank vs eval (torch)"}),
    (raw_json, "rank_vs_eval_onnx-int8.json", {"title": "## rank (int8 ONNX) on WikiQA test"}),
]
# files a section reads besides its own: never shown again as unnamed
READ_BY_SECTIONS = {"bench_int8_len64.json", "distill_runs.jsonl"}


def section(render, name: str | None, words: dict) -> list[str]:
    if name is None:
        return render(**words)
    d = load(name)
    return render(d, **words) if d else []


def unnamed_results() -> list[str]:
    """Top-level JSON results no section names: shown as they are, under their command (or file name)."""
    named = {name for _, name, _ in SECTIONS if name} | READ_BY_SECTIONS
    out = []
    for p in sorted(RES.glob("*.json")):
        if p.name not in named:
            d = json.loads(p.read_text())
            cmd = d.get("command") if isinstance(d, dict) else None
            out += raw_json(d, f"## `{cmd}`" if cmd else f"## {p.name}")
    return out


def main() -> None:
    out = list(HEADER)
    for render, name, words in SECTIONS:
        out += section(render, name, words)
    out += unnamed_results()
    (HERE / "RESULTS.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
