"""Collect benchmarks/results/*.json into benchmarks/RESULTS.md (tables only: every number comes from those files,
which record the command that produced them)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RES = HERE / "results"


def load(name: str):
    p = RES / name
    return json.loads(p.read_text()) if p.exists() else None


def since_fused_note() -> list[str]:
    """Every length-128 int8/fp32 ratio measured since the current int8 default: the full bench run and the repeats."""
    import statistics

    ratios: dict[int, list[float]] = {}
    b = load("bench_cpu.json")
    if b:
        by = {(r["backend"], r["batch_size"]): r for r in b["rows"] if r["max_length"] == 128}
        for bs in (1, 32):
            if ("ort", bs) in by and ("ort-int8", bs) in by:
                ratios.setdefault(bs, []).append(by[("ort", bs)]["latency_ms"]["p50"] / by[("ort-int8", bs)]["latency_ms"]["p50"])
    for f in ("int8_speedup_fused.json", "int8_speedup_fused_len128.json"):
        for r in (load(f) or {}).get("runs", []):
            if r["max_length"] == 128:
                ratios.setdefault(r["batch_size"], []).append(r["speedup_p50"])
    return [f"Since the current int8 default, every length-128 run (the full bench run above and the repeated runs below): batch {bs}: "
            f"median {statistics.median(v):.2f}x over {len(v)} runs, lowest {min(v):.2f}x, highest {max(v):.2f}x." for bs, v in sorted(ratios.items())]


def main() -> None:
    out = ["# Measured results", "", "Machine: the development box (2 CPU cores, AMD/Intel x86 with avx512_vnni, no GPU) unless a",
           "section says otherwise. It is shared and noisy: speeds are medians and ratios measured in one run.", ""]
    st = load("cli_startup.json")
    if st:
        out += ["## CLI start-up", "", f"`{st['command']}` (load average {st['loadavg_1m']:.2f})", "", "| command | median | min |", "|---|---|---|"]
        out += [f"| `{k}` | {v['median_s']*1000:.0f} ms | {v['min_s']*1000:.0f} ms |" for k, v in st["results"].items()]
        out.append("")
    for fname, title in (("teachers_eval_pair.json", "## The two distillation teachers and their ensemble (mean calibrated logit)"),
                         ("teachers_eval.json", "## All teachers, with the fine-tuned cross-encoder (gold + mpnet soft target, chosen on dev MAP .7805), and their ensemble"),
                         ("teachers_eval_cross_gold_only.json", "## The same with the gold-only fine-tuned cross-encoder (4 epochs, dev MAP .7703): a tie with zero-shot L6 on WikiQA test")):
        te = load(fname)
        if not te:
            continue
        out += [title, "",
                "| model | WikiQA test MAP | MRR | TREC-QA dev MAP | MRR |", "|---|---|---|---|---|"]
        out += [f"| {r['model']} | {r['wikiqa_map']:.4f} | {r['wikiqa_mrr']:.4f} | {r['trec_map']:.4f} | {r['trec_mrr']:.4f} |" for r in te["rows"]]
        out += ["", f"Command: `{te['rows'][0]['command']}`", ""]
    z = load("zeroshot_wikiqa_test.json")
    if z:
        out += ["## Zero-shot packaged encoders on WikiQA test (237 questions with a correct and a wrong candidate)", "",
                "| model | MAP | MRR | P@1 | AUC |", "|---|---|---|---|---|"]
        out += [f"| {r['model']} | {r['map']:.4f} | {r['mrr']:.4f} | {r['p@1']:.4f} | {r['auc']:.4f} |" for r in z["rows"]]
        out += ["", "Command: `qadistill eval --teachers all-mpnet-base-v2,all-minilm-l6-v2,paraphrase-minilm-l3-v2 --data wikiqa --split test --format json`", ""]
    tt = load("teach_minilm_l6_cross_wikiqa.json")
    if tt:
        out += ["## `qadistill teach minilm-l6-cross-wikiqa --data wikiqa --epochs 2`", "",
                f"Best dev MAP {tt['dev_map']:.4f} (history: " + ", ".join(f"step {h['step']}: {h['dev_map']:.4f}" for h in tt["history"]) +
                f"); {tt['train_pairs']} train pairs (questions with an answer), {tt['train_seconds']:.0f} s of training.", ""]
    t4 = load("teach_minilm_l6_cross_wikiqa_e4.json")
    if t4:
        out += ["## `qadistill teach minilm-l6-cross-wikiqa --data wikiqa --epochs 4 --eval-every 271 --patience 4`", "",
                f"Best dev MAP {t4['dev_map']:.4f} at step {t4['best_step']} of {t4['steps']} (history: " +
                ", ".join(f"{h['step']}: {h['dev_map']:.4f}" for h in t4["history"]) + f"); {t4['train_seconds']:.0f} s of training. "
                "Its test figures are in the gold-only teachers table above.", ""]
    tdf = load("teach_minilm_l6_cross_wikiqa_distill.json")
    if tdf:
        out += ["## `qadistill teach ... --distill-from all-mpnet-base-v2` (gold + mpnet soft target)", "",
                f"Best dev MAP {tdf['dev_map']:.4f} at step {tdf['best_step']} of {tdf['steps']}; {tdf['train_seconds']:.0f} s of training; "
                f"command `{tdf.get('command', '')}`. Higher dev MAP than the gold-only run, so this is the registered "
                "`minilm-l6-cross-wikiqa`; its test figures are in the first all-teachers table above.", ""]
    ts = load("teacher_scoring.json")
    if ts:
        out += ["## Teacher scoring throughput and the logit cache", "", f"`{ts['command']}`", "",
                "| teacher | pairs | cold s | pairs/s | cached ms | cache speed-up |", "|---|---|---|---|---|---|"]
        out += [f"| {r['teacher']} | {r['pairs']} | {r['cold_seconds']:.1f} | {r['pairs_per_s']:.1f} | {r['cached_seconds_median']*1000:.1f} | {r['cache_speedup']:.0f}x |" for r in ts["rows"]]
        out.append("")
    dt = HERE / "results" / "distill_table.md"
    if dt.exists():
        out += ["## Distillation (WikiQA train → student of 17.4M parameters, 3 layers)", "",
                "Students: `minilm-l3-student`, 1 epoch, max length 64, batch 32, lr 1e-4, T=2, alpha=0.5; teachers",
                "all-mpnet-base-v2 + all-minilm-l6-v2 (zero-shot, calibrated). Mean ± std over seeds where several.", "",
                dt.read_text(), ""]
    for fname, title in (("export_two_stage.json", "## Export of the two-stage MKDM student (`qadistill export bench-two-stage-s1 --all`)"),
                         ("export_mkdm.json", "## Export of the one-stage MKDM student (`qadistill export bench-mkdm-s1 --all`, static int8 then quantized every op with minmax)")):
        ex = load(fname)
        if ex:
            out += [title, "",
                    "| variant | size MB | max abs logit diff | MAP torch → variant (dev sample) | parity | settings |", "|---|---|---|---|---|---|"]
            out += [f"| {r['variant']} | {r['size_bytes']/1e6:.1f} | {r['parity']['max_abs_diff']:.2e} | {r['parity']['map_reference']:.4f} → "
                    f"{r['parity']['map_variant']:.4f} ({r['parity']['map_delta_points']:+.2f}) | {'ok' if r['parity']['ok'] else 'FAIL'} | {r['details']} |" for r in ex]
            out.append("")
    ratios = []
    for fname in ("bench_cpu.json", "bench_int8_len64.json"):
        b = load(fname)
        if not b:
            continue
        rows = {(r["model"], r["backend"], r["batch_size"]): r for r in b["rows"]}
        for (m, be, bs), r in sorted(rows.items()):
            f = rows.get((m, "ort", bs))
            if be == "ort-int8" and f:
                ratios.append(f"| {b['run_id']} | {m} | {b['settings']['max_length']} | {bs} | {f['latency_ms']['p50']:.1f} | {r['latency_ms']['p50']:.1f} | "
                              f"{f['latency_ms']['p50'] / r['latency_ms']['p50']:.2f}x | {f['latency_ms']['min'] / r['latency_ms']['min']:.2f}x | "
                              f"{b['env']['loadavg_1m']:.2f} |")
    if ratios:
        out += ["## int8 dynamic vs ONNX Runtime fp32 (same run, 2 threads, inputs padded to the length)", "",
                "| run | model | length | batch | fp32 p50 ms | int8 p50 ms | speed-up (p50) | speed-up (min) | load at start |", "|---|---|---|---|---|---|---|---|---|"] + ratios
        out += ["", *since_fused_note(), "", "Before the current int8 (O2-fused graph, denormals flushed, SkipLayerNorm unfused), int8",
                "quantized the plain graph and stayed short of 2x at length 128: the fp32 softmax was slow on denormals from the",
                "padding mask, and ONNX Runtime fused Add + LayerNorm into a slower SkipLayerNormalization kernel",
                "(`benchmarks/ort_session_ab.py`, `benchmarks/skip_layernorm.py`). An earlier ad-hoc try of the fused graph",
                "without those two settings measured no gain (1.76x vs 1.75x).", ""]
    op = load("ort_op_profile.json")
    if op:
        out += ["## Where ONNX Runtime spends its time (per-operator share of kernel time)", "", f"`{op['command']}` (load {op['loadavg_1m']:.2f})", "",
                "| model | kernel ms / run | top operators |", "|---|---|---|"]
        out += [f"| {Path(m['model']).name} | {m['kernel_ms_per_run']:.0f} | " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(m["share"].items())[:6]) + " |"
                for m in op["models"]]
        out.append("")
    b = load("bench_cpu.json")
    if b:
        out += ["## `qadistill bench` on this CPU", "", f"Run {b['run_id']}: {b['env']['cpu']}, {b['env']['cpu_count']} cores, load "
                f"{b['env']['loadavg_1m']:.2f} → {b['env'].get('loadavg_1m_end', 0):.2f}; length {b['settings']['max_length']}; "
                f"{b['settings']['data']}/{b['settings']['split']}. Plot: `results/bench_cpu.png`.", "",
                "| model | backend | batch | p50 ms | p90 | p99 | pairs/s | e2e pairs/s | speed-up | size MB | MAP | Pareto |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(b["rows"], key=lambda r: (r["batch_size"], -r["throughput_pairs_s"])):
            l = r["latency_ms"]
            out.append(f"| {r['model']} | {r['backend']} | {r['batch_size']} | {l['p50']:.1f} | {l['p90']:.1f} | {l['p99']:.1f} | "
                       f"{r['throughput_pairs_s']:.1f} | {r['e2e_throughput_pairs_s']:.1f} | {r['speedup']:.1f}x | {r['size_mb']:.0f} | "
                       f"{r['map']:.4f} | {'★' if r.get('pareto') else ''} |")
        out.append("")
    for fname, label in (("int8_speedup_fused_len128.json", "the current default (O2-fused graph, denormals flushed, SkipLayerNorm unfused), length 128, 5 runs"),
                         ("int8_speedup_fused.json", "the current default, lengths 64 and 128"),
                         ("int8_speedup_fused_no_daz.json", "O2-fused graph, before denormal flushing"),
                         ("int8_speedup.json", "plain graph, weight MatMuls only (before)"),
                         ("int8_speedup_all_matmuls.json", "plain graph, every MatMul quantized (before)"),
                         ("int8_speedup_1thread.json", "plain graph, every MatMul quantized, 1 thread")):
        sp = load(fname)
        if not sp:
            continue
        vs_opt = "speedup_vs_optimized_median" in sp["summary"][0]
        out += [f"## int8 dynamic vs ONNX Runtime fp32, repeated runs: {label}", "", f"`{sp['command']}` ({sp['threads']} threads; each ratio "
                "is taken inside one `qadistill bench` run, padded to the length; the spread between runs is this machine's noise)", "",
                "| length | batch | median speed-up | per run |" + (" vs fp32 O2 (median) |" if vs_opt else ""),
                "|---|---|---|---|" + ("---|" if vs_opt else "")]
        out += [f"| {x['max_length']} | {x['batch_size']} | {x['speedup_median']:.2f}x | {', '.join(f'{v:.2f}' for v in x['speedups'])} |"
                + (f" {x['speedup_vs_optimized_median']:.2f}x |" if vs_opt else "") for x in sp["summary"]]
        out.append("")
    q = HERE / "results" / "quiet_cpu"
    if (q / "int8_speedup_quiet.json").exists():
        sp = json.loads((q / "int8_speedup_quiet.json").read_text())
        env = (q / "env.txt").read_text().splitlines()
        out += ["## int8 dynamic vs ONNX Runtime fp32 on a quiet CPU (a lent GPU machine's CPU; `bash benchmarks/quiet_cpu_int8.sh`)", "",
                f"{next((ln.split(':', 1)[1].strip() for ln in env if ln.startswith('Model name')), '?')}, "
                f"{next((ln.split(':', 1)[1].strip() for ln in env if ln.startswith('CPU(s)')), '?')} cores; "
                f"{next((line for line in env if 'onnxruntime' in line), '')}. The student's architecture with random weights (speed "
                f"only), exported there by `qadistill export`; `{sp['command']}` (2 threads of 16, on a freshly started machine running no other job).", "",
                "| length | batch | median speed-up | per run | vs fp32 O2 (median) |", "|---|---|---|---|---|"]
        out += [f"| {x['max_length']} | {x['batch_size']} | {x['speedup_median']:.2f}x | {', '.join(f'{v:.2f}' for v in x['speedups'])} | "
                f"{x['speedup_vs_optimized_median']:.2f}x |" for x in sp["summary"]]
        out += ["", "The same machine's SkipLayerNormalization kernel check:", "", "```", (q / "skip_layernorm_quiet.txt").read_text().rstrip(), "```", ""]
    ab = load("ort_session_ab.json")
    if ab:
        out += ["## ONNX Runtime session settings on the CPU (alternating processes)", "", f"`{ab['command']}` ({ab['threads']} threads, "
                f"length {ab['max_length']}, median of per-round p50s)", "", "| variant | batch | setting | p50 ms | per round | vs defaults |", "|---|---|---|---|---|---|"]
        out += [f"| {r['variant']} | {r['batch_size']} | {r['setting']} | {r['p50_ms_median']:.2f} | {', '.join(f'{v:.1f}' for v in r['p50_ms_rounds'])} | "
                f"{r['speedup_vs_defaults']:.2f}x |" for r in ab["rows"]]
        out.append("")
    sln = HERE / "results" / "skip_layernorm.txt"
    if sln.exists():
        out += ["## Fused SkipLayerNormalization vs Add + Add + LayerNormalization (ONNX Runtime CPU kernels)", "", "```", sln.read_text().rstrip(), "```", ""]
    for fname, label in (("int8_settings_fused.json", "plain vs O2-fused graph; the current default is O2 per-tensor"),
                         ("int8_settings_weights_only.json", "plain graph, weight MatMuls only: attention products kept fp32 (before)"),
                         ("int8_settings.json", "plain graph, every MatMul quantized (before 2026-11-26 15:40)")):
        st = load(fname)
        if not st:
            continue
        out += [f"## int8 settings on dev (chosen there) and test: {label}", "", f"`{st['command']}` — {st['note']}", "",
                "| student | variant | batch | dev MAP | test MAP | max |Δlogit| (test) | MB |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['student']} | {r['variant']} | {r['batch_size']} | {r['dev_map']:.4f} | {r['test_map']:.4f} | "
                f"{r.get('test_max_abs_diff', 0):.3f} | {r['size_mb']:.1f} |" for r in st["rows"]]
        out.append("")
    cuda = HERE / "results" / "cuda"
    if cuda.exists():
        import sys

        sys.path.insert(0, str(HERE))
        from cuda_summary import table

        out += ["## CUDA (lent GPU machines; `bash benchmarks/cuda_bench.sh`)", "",
                "One call per card; compare rows only within one table (the same card, the same run). Rows named \"random "
                "weights: speed only\" are the teachers' architectures built from their configs with random weights (the "
                "weights could not travel under the 64 MiB transfer limit): they time the architecture and nothing else. "
                "ONNX Runtime on CUDA was not measured: that image's onnxruntime is the CPU build "
                f"(`{(cuda / 'ort_cuda_h100.txt').read_text().splitlines()[0] if (cuda / 'ort_cuda_h100.txt').exists() else ''}`).", ""]
        for f, title in (("bench_cuda_h100_student.json", "The student on an H100, every PyTorch CUDA backend, WikiQA test MAP measured per backend (plot: `results/cuda/bench_cuda_h100_student.png`)"),
                         ("bench_cuda_h200_student_vs_mpnet.json", "The student against the mpnet architecture, same run, on an H200 (no accuracy pass)"),
                         ("bench_cuda_h200_shapes.json", "Teacher architectures on an H200 (speed only)")):
            if (cuda / f).exists():
                out += [f"### {title}", ""] + table([str(cuda / f)]) + [""]
    for name, title in (("bench_quick_int8_vs_fp32.json", "Quick bench: MKDM student, ONNX Runtime fp32 vs int8 dynamic (no accuracy pass; load average was high)"),
                        ("harness_overhead.json", "Harness overhead"), ("rank_latency.json", "`qadistill rank` wall time"),
                        ("rank_vs_eval_torch.json", "rank vs eval (torch)"), ("rank_vs_eval_onnx-int8.json", "rank (int8 ONNX) on WikiQA test"),
                        ("quickstart_summary.json", "Quickstart")):
        d = load(name)
        if d:
            out += [f"## {title}", "", "```json", json.dumps(d, indent=2), "```", ""]
    (HERE / "RESULTS.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
