from __future__ import annotations

import os

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import Device, dim, err_console, out_console, print_json, refuse_named_twice, styled, table, warn
from qadistill.cli.errors import handle_errors


Lengths = Enum("Lengths", {m: m for m in ("padded", "real", "both")}, type=str)  # padded to --max-length, real lengths, or both


class BenchFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@handle_errors
def bench(
    models: Annotated[list[str] | None, typer.Argument(help="Teachers, built students, export artifacts or folders.")] = None,
    device: Annotated[Device, typer.Option(help="Where to run (never a silent fall back to the CPU).")] = Device.cpu,
    backends: Annotated[str | None, typer.Option(help="Comma-separated: torch, torch-fp16, torch-bf16, torch-compile, torch-fp16-compile, torch-bf16-compile (CUDA), ort, ort-optimized, ort-int8, ort-int8-static, ort-fp16, ort-trt.")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32",
    max_length: Annotated[int, typer.Option(min=8)] = 128,
    lengths: Annotated[Lengths, typer.Option(help="padded: a timed unit is a batch padded to --max-length; real: one query's full candidate list at its real lengths (tokenization in e2e; batches of at most --batch-sizes pairs); both.")] = Lengths.padded,
    threads: Annotated[int | None, typer.Option(min=1, help="Intra-op threads (default: torch's default, printed).")] = None,
    sessions: Annotated[str, typer.Option(help="ONNX Runtime targets: also N sessions sharing --threads, fed batches in parallel (comma-separated, e.g. 1,2; a padded unit is then N batches at once). PyTorch targets run one.")] = "1",
    data: Annotated[str, typer.Option()] = "wikiqa",
    split: Annotated[str | None, typer.Option(help="A named dataset's split (default test; trecqa: dev); for a file `all` (default) or train/dev/test of its by-query split.")] = None,
    min_time: Annotated[float, typer.Option(min=0.0, help="Seconds of timed runs per batch size (at least).")] = 2.0,
    min_runs: Annotated[int, typer.Option(min=1)] = 10,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="Skip the accuracy pass.")] = False,
    accuracy_queries: Annotated[int | None, typer.Option(min=1, help="Accuracy on the first N queries that have a correct and a wrong candidate (quick runs).")] = None,
    baseline: Annotated[str | None, typer.Option(help="MODEL[:BACKEND] for speed-ups (default: best teacher, torch).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write accuracy-vs-throughput PNG here.")] = None,
    compare: Annotated[list[str] | None, typer.Option(help="Show two stored runs side by side: --compare RUN_A --compare RUN_B.")] = None,
    fmt: Annotated[BenchFormat, typer.Option("--format", "-f", help="Output as a rich table, or as JSON or CSV for scripts.")] = BenchFormat.table,
) -> None:
    """Accuracy versus speed across models, backends and devices: latency p50/p90/p99, throughput, size, memory, MAP."""
    from qadistill.bench import BenchSettings, check_batch_tokens, check_device, plot as draw, resolve_targets, run_bench
    from qadistill.errors import UserInputError
    from qadistill.registry import Registry
    from qadistill.store import Store

    device, fmt = device.value, fmt.value
    store = Store.open()
    if compare:
        if models:  # a comparison of stored runs measures nothing: models named beside it would be silently dropped
            raise UserInputError(f"--compare shows two stored runs; the models named too ({', '.join(models)}) would not be benched",
                                 "run `qadistill bench MODELS` first (it prints its run id), then compare the ids alone")
        _compare(_saved_runs(store, compare), fmt)
        return
    if not models:
        raise UserInputError("nothing to benchmark", "name models, e.g. `qadistill bench all-mpnet-base-v2 quickstart-mkdm-s42`")
    bss = _batch_sizes(batch_sizes)
    check_batch_tokens(bss, max_length)
    ns = _batch_sizes(sessions, "--sessions", "1,2")
    bl = _backend_list(models, backends)
    if plot and no_accuracy:
        raise UserInputError("--plot draws MAP against throughput: it needs the accuracy pass", "drop --no-accuracy (or --plot)")
    if threads and threads > (os.cpu_count() or 1):
        err_console().print(f"warning: --threads {threads} is more than this machine's {os.cpu_count()} CPUs: the "
                            "threads share cores, so the speeds measure contention, not the model")
    if plot:
        _check_plot(plot)
    if baseline and baseline.partition(":")[0] not in models:
        raise UserInputError(f"--baseline {baseline!r}: its model is not among the models benched ({', '.join(models)})",
                             "use MODEL[:BACKEND] with one of the models on the command line")
    check_device(device, bl or [])  # before the data: a missing GPU is the first thing to say
    from qadistill.splits import default_split, load_split, require_labelled

    split = split or default_split(data)
    if not no_accuracy:
        ds = load_split(data, split)  # a missing or broken file fails here, before any model loads
        require_labelled(ds, f"--data {data} --split {split} (the accuracy pass)")
    settings = BenchSettings(device=device, batch_sizes=bss, max_length=max_length, threads=threads, data=data, split=split,
                             min_time=min_time, min_runs=min_runs, accuracy=not no_accuracy, accuracy_limit_queries=accuracy_queries,
                             lengths=lengths.value, sessions=ns)
    targets = resolve_targets(models, bl, Registry(store=store), device)
    _check_targets(targets, max_length, baseline)
    if max(ns) > 1 and not any(t.backend.startswith("ort") for t in targets):
        raise UserInputError(f"--sessions {sessions}: sessions are for ONNX Runtime backends, and none is benched here",
                             "add --backends ort-int8 (after `qadistill export NAME --quantize dynamic`), or drop --sessions")
    res = _measure(run_bench, targets, settings, baseline, store)
    if plot and res["rows"]:
        draw(res["rows"], plot)
        err_console().print(f"plot written to {plot}")
    _report(res, fmt)


def _backend_list(models: list[str], backends: str | None) -> list[str] | None:
    """--backends as a list (None: the defaults), read as --batch-sizes is (an empty item is refused); a model named
    twice is refused (it made two identical rows, while a backend named twice made one)."""
    from qadistill.errors import UserInputError

    refuse_named_twice(models, "name each model once")
    if backends is None:
        return None
    items = [b.strip() for b in backends.split(",")]
    if not any(items):
        raise UserInputError(f"--backends {backends!r} names no backend", "e.g. --backends torch,ort-int8")
    if "" in items:
        raise UserInputError(f"--backends {backends!r} has an empty item", "separate backends with single commas, e.g. torch,ort-int8")
    return list(dict.fromkeys(items))


def _check_targets(targets: list, max_length: int, baseline: str | None) -> None:
    """What would fail mid-run fails here, before any worker starts: a length a model cannot read, a --baseline that
    names no benched row (it failed after the first rows were measured)."""
    from qadistill.errors import UserInputError
    from qadistill.sources import check_max_length

    for t in targets:
        check_max_length(Path(t.folder), max_length)
    if baseline:
        m, _, b = baseline.partition(":")
        if not any(t.model == m and (not b or t.backend == b) for t in targets):
            rows = ", ".join(dict.fromkeys(f"{t.model}:{t.backend}" for t in targets))
            raise UserInputError(f"--baseline {baseline!r} names no row this run measures", f"use one of {rows}")


def _measure(run_bench, targets: list, settings, baseline: str | None, store) -> dict:
    """The run under a progress display; Ctrl-C says nothing was kept (a run is stored only when it ends)."""
    from qadistill.errors import InterruptedRunError
    from qadistill.progress import RichProgress

    try:
        with RichProgress() as prog:
            return run_bench(targets, settings, baseline=baseline, progress=prog, store=store)
    except KeyboardInterrupt as exc:  # not "run it again to finish it": a rerun starts over
        raise InterruptedRunError("interrupted: a bench run is stored only when it ends, so nothing of this one was kept",
                                  "run the same command again: it starts over", exc) from None


def _saved_runs(store, ids: list[str]) -> list[dict]:
    """The two stored bench runs of --compare, or a one-line error naming the recent ones."""
    from qadistill.errors import UserInputError

    if len(ids) != 2:
        have = ", ".join(x["id"] for x in store.bench_runs(5)) or "none yet: run `qadistill bench MODELS` first"
        raise UserInputError("--compare needs exactly two run ids: --compare RUN_A --compare RUN_B", f"recent runs: {have}")
    runs = [store.bench_run(r) for r in ids]
    for rid, r in zip(ids, runs):
        if r is None:
            have = ", ".join(x["id"] for x in store.bench_runs(5)) or "none yet"
            raise UserInputError(f"no stored bench run {rid!r}", f"recent runs: {have}")
    return runs


def _batch_sizes(text: str, option: str = "--batch-sizes", example: str = "1,8,32") -> list[int]:
    """A comma-separated option (--batch-sizes, --sessions) as distinct positive integers."""
    from qadistill.errors import UserInputError

    try:
        bss = [int(x) for x in text.split(",")]
    except ValueError:
        raise UserInputError(f"{option} {text!r} is not a list of integers", f"e.g. {option} {example}") from None
    if any(b < 1 for b in bss) or not bss or len(set(bss)) != len(bss):
        raise UserInputError(f"{option} {text!r}: give distinct positive integers", f"e.g. {option} {example}")
    return bss


def _report(res: dict, fmt: str) -> None:
    """Failures on stderr; the rows as a table, JSON or CSV on stdout."""
    from qadistill.bench import to_csv

    for e in res["errors"]:
        err_console().print(styled("[red]failed[/] {}:{}: {}", e['target']['model'], e['target']['backend'], e['error']))
    if fmt == "json":
        print_json(res)
    elif fmt == "csv":
        typer.echo(to_csv(res["rows"], res), nl=False)
    else:
        _render(res)


FULL_WIDTH, MEDIUM_WIDTH = 170, 110
MEDIUM_COLUMNS = ("model", "backend", "batch", "p50 ms", "p99", "pairs/s", "speed-up", "MB", "MAP")
NARROW_COLUMNS = ("model", "backend", "batch", "p50 ms", "pairs/s", "speed-up", "MB", "MAP")  # the model name wraps


def _render(res: dict) -> None:
    env = res["env"]
    rows = []
    for r in sorted(res["rows"], key=lambda r: (r.get("lengths", "padded"), r["batch_size"], -r["throughput_pairs_s"])):
        l = r["latency_ms"]
        rows.append([
            styled(("[bold green]★[/] " if r.get("pareto") else "  ") + "{}", r["model"] + (" ²" if r.get("architecture") == "bi-encoder" else "")), _backend_cell(r), _batch_cell(r),
            f"{l['p50']:.1f}", f"{l['p90']:.1f}", f"{l['p99']:.1f}", f"{l['min']:.1f}", f"{r['tokenize_ms']['p50']:.1f}",
            f"{r['throughput_pairs_s']:.1f}", f"{r['e2e_throughput_pairs_s']:.1f}",
            f"{r['speedup']:.1f}x" if r.get("speedup") else "-", f"{r['size_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
            *(f"{r[k]:.4f}" if r.get(k) is not None else "-" for k in ("map", "mrr", "mrr@10", "ndcg@10")),
        ])
    cols = ["model", "backend", "batch", "p50 ms", "p90", "p99", "min", "tok ms", "pairs/s", "e2e pairs/s", "speed-up",
            "MB", "RSS MB", "MAP", "MRR", "MRR@10", "NDCG@10"]
    con = out_console()
    hidden: list[str] = []
    if con.width < FULL_WIDTH:  # a narrow terminal (or a pipe, 80) squeezed every column to nothing: keep those that fit
        keep = NARROW_COLUMNS if con.width < MEDIUM_WIDTH else MEDIUM_COLUMNS
        hidden = [c for c in cols if c not in keep]
        idx = [cols.index(c) for c in keep]
        cols, rows = [cols[i] for i in idx], [[row[i] for i in idx] for row in rows]
    s = res["settings"]
    mode = "" if s.get("lengths", "padded") == "padded" else f" · lengths {s['lengths']}"
    covered = next((r.get("accuracy_queries") for r in res["rows"] if r.get("accuracy_queries")), None)
    sample = f" (MAP on its first {covered} scorable queries)" if s.get("accuracy_limit_queries") and covered else ""
    title = (f"{res['run_id']}: {s['device']} · length {s['max_length']}{mode} · {s['data']}/{s['split']}{sample} · threads "
             f"{res['rows'][0]['threads'] if res['rows'] else '?'} · load {env['loadavg_1m']:.2f}→{env.get('loadavg_1m_end', 0):.2f}")
    con.print(table(title, cols, rows, no_wrap=tuple(c for c in cols if c != "model")))
    if any(r.get("sessions", 1) > 1 for r in res["rows"]):
        err_console().print(dim("×N: N sessions sharing the threads, fed batches in parallel (padded: p50 ms per N batches "
                            "at once; pairs/s counts all N)"))
    if any(r.get("lengths") == "real" for r in res["rows"]):
        err_console().print(dim("batch 'N real': a timed unit is one query's full candidate list at its real lengths, in "
                            "batches of at most N pairs (p50 ms per list; pairs/s over all timed lists)"))
    base = res["rows"][0].get("baseline") if res["rows"] else None
    speed = (f"speed-up vs {base} at the same batch" if base else
             "no speed-up: no teacher ran under torch here (add one, or --baseline MODEL[:BACKEND])")
    err_console().print(dim(f"★ Pareto-optimal (MAP vs throughput at the same batch); {speed}; {env['cpu']}; stored as {res['run_id']}"))
    busy = max(env.get("loadavg_1m", 0.0), env.get("loadavg_1m_end", 0.0))
    if env.get("cpu_count") and busy >= env["cpu_count"]:
        err_console().print(warn(f"the machine was busy (load {busy:.1f} on {env['cpu_count']} cores): absolute times are noisy; "
                            "compare rows within this run, or rerun when it is idle"))
    if any(r.get("architecture") == "bi-encoder" for r in res["rows"]):
        err_console().print(dim("² a bi-encoder: each pair costs two encodes (query and passage, no embedding reused), "
                            "as when it reranks fresh candidates"))
    if hidden:
        err_console().print(dim(f"{con.width} columns: {', '.join(hidden)} not shown (a terminal of {FULL_WIDTH}+ columns, "
                            "or --format json / csv)"))


def _backend_cell(r: dict) -> str:
    """The backend column: "ort-int8 ×2" for a row served by two sessions at once."""
    n = r.get("sessions", 1)
    return r["backend"] if n == 1 else f"{r['backend']} ×{n}"


def _batch_cell(r: dict) -> str:
    """The batch column: the batch size, and "real" for a real-lengths row (its unit is a query's candidate list)."""
    return f"{r['batch_size']} real" if r.get("lengths") == "real" else str(r["batch_size"])


COMPARED_SETTINGS = ("device", "data", "split", "max_length", "threads", "accuracy_limit_queries", "min_time", "lengths")


def compare_differences(a: dict, b: dict) -> list[str]:
    """The settings two stored runs were measured under that are not the same ("max_length 128 / 16"), and the
    machine's CPU where it differs."""
    sa, sb = a.get("settings") or {}, b.get("settings") or {}
    out = [f"{k} {sa.get(k)} / {sb.get(k)}" for k in COMPARED_SETTINGS if sa.get(k) != sb.get(k)]
    ca, cb = (a.get("env") or {}).get("cpu"), (b.get("env") or {}).get("cpu")
    if ca != cb:
        out.append(f"cpu {ca} / {cb}")
    return out


def _compare(runs: list[dict], fmt: str) -> None:
    key = lambda r: (r["model"], _backend_cell(r), r["batch_size"], r.get("lengths", "padded"))  # noqa: E731
    a = {key(r): r for r in runs[0]["rows"]}
    b = {key(r): r for r in runs[1]["rows"]}
    keys = sorted(set(a) | set(b), key=lambda k: (k[3], k[2], k[0], k[1]))
    out = []
    for k in keys:
        ra, rb = a.get(k), b.get(k)
        ta = ra["throughput_pairs_s"] if ra else None
        tb = rb["throughput_pairs_s"] if rb else None
        out.append({"model": k[0], "backend": k[1], "batch_size": k[2], "lengths": k[3], "a_pairs_s": ta, "b_pairs_s": tb,
                    "ratio_b_over_a": (tb / ta) if ta and tb else None,
                    "a_map": ra.get("map") if ra else None, "b_map": rb.get("map") if rb else None})
    differ = compare_differences(runs[0], runs[1])
    if differ:  # a ratio of runs measured under other settings is not the change alone: said, in every format
        err_console().print(warn(f"the runs differ in more than the code: {'; '.join(differ)} (their ratios and MAPs mix both)"))
    if fmt == "json":
        print_json({"a": runs[0]["run_id"], "b": runs[1]["run_id"], "differences": differ, "rows": out})
        return
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(out[0]) if out else ["model"], lineterminator="\n")
        w.writeheader()
        w.writerows(out)
        typer.echo(buf.getvalue(), nl=False)
        return
    f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    out_console().print(table(f"{runs[0]['run_id']} (A) vs {runs[1]['run_id']} (B)",
                              ["model", "backend", "batch", "A pairs/s", "B pairs/s", "B/A", "A MAP", "B MAP"],
                              [[o["model"], o["backend"], _batch_cell(o), f(o["a_pairs_s"]), f(o["b_pairs_s"]), f(o["ratio_b_over_a"], 2),
                                f(o["a_map"], 4), f(o["b_map"], 4)] for o in out]))


def _check_plot(plot: Path) -> None:
    """--plot must name a new or existing .png file in an existing folder: checked before the benchmark, not after."""
    from qadistill.errors import UserInputError

    if plot.is_dir():
        raise UserInputError(f"--plot {plot} is a folder", f"name a .png file, e.g. --plot {plot / 'bench.png'}")
    if plot.suffix.lower() != ".png":
        raise UserInputError(f"--plot {plot}: the plot is a PNG image", f"name it with .png, e.g. --plot {plot.with_suffix('.png')}")
    if plot.parent.exists() and not plot.parent.is_dir():
        raise UserInputError(f"--plot {plot}: {plot.parent} is a file, not a folder", "write the plot into a folder")
    if not plot.parent.is_dir():
        raise UserInputError(f"--plot {plot}: folder {plot.parent} does not exist", "create it first, or write the plot elsewhere")
    import os
    import tempfile

    try:  # said now, not after the whole benchmark (the plot is written through a temp file beside it)
        fd, probe = tempfile.mkstemp(prefix=f".{plot.name}.", suffix=".probe", dir=plot.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserInputError(f"--plot {plot}: folder {plot.parent} cannot be written ({exc.strerror or exc})",
                             "write the plot into a folder you can write to") from None
