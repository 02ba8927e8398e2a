from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import Format, FormatOpt, err_console, out_console, print_json, table
from qadistill.cli.errors import handle_errors
from qadistill.losses import HEAD_COMBINES, HEAD_KINDS, LOSSES, MODES, PRECISIONS


# the recipe's vocabularies (losses.MODES / LOSSES), as the choices typer shows and validates
Mode = Enum("Mode", {m.replace("-", "_"): m for m in MODES}, type=str)
Loss = Enum("Loss", {m.replace("-", "_"): m for m in LOSSES}, type=str)
Precision = Enum("Precision", {m: m for m in PRECISIONS}, type=str)
Heads = Enum("Heads", {m: m for m in HEAD_KINDS}, type=str)
HeadCombineOpt = Enum("HeadCombine", {m: m for m in HEAD_COMBINES}, type=str)


@handle_errors
def distill(
    pipeline: Annotated[str | None, typer.Argument(help="A pipeline recipe (e.g. quickstart); options below override it.")] = None,
    teachers: Annotated[str | None, typer.Option(help="Comma-separated teacher names.")] = None,
    student: Annotated[str | None, typer.Option(help="Student recipe name.")] = None,
    data: Annotated[str | None, typer.Option(help="wikiqa or a file path (a file alone is split by query into train/dev/test).")] = None,
    dev: Annotated[str | None, typer.Option(help="With a --data file: the dev file (early stopping); needs --test.")] = None,
    test: Annotated[str | None, typer.Option(help="With a --data file: the test file (reported metrics); needs --dev.")] = None,
    split_seed: Annotated[int | None, typer.Option(min=0, help="Seed of the by-query split of a single --data file.")] = None,
    mode: Annotated[Mode | None, typer.Option(help="gold: labels only; single: one teacher; avg: one head on the teachers' mean (default: mkdm did not beat it in benchmarks/results/mkdm_ablation.md); mkdm: one head per teacher.")] = None,
    loss: Annotated[Loss | None, typer.Option(help="Teacher objective: soft BCE per pair, KL over each query's candidates, or Margin-MSE.")] = None,
    list_size: Annotated[int | None, typer.Option(min=2, help="Ranking losses: candidates per list (longer lists are cut).")] = None,
    heads: Annotated[Heads | None, typer.Option(help="mkdm heads: linear per teacher, or mlp (a hidden layer per teacher; folds, no inference cost).")] = None,
    head_combine: Annotated[HeadCombineOpt | None, typer.Option(help="Served score: mean of the heads, or learned (convex weights fitted on dev; kept where they beat the mean).")] = None,
    precision: Annotated[Precision | None, typer.Option(help="Training arithmetic: fp32, bf16 autocast, or auto (bf16 where the CPU/GPU has it natively).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    max_length: Annotated[int | None, typer.Option(min=8)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    temperature: Annotated[float | None, typer.Option()] = None,
    alpha: Annotated[float | None, typer.Option(help="Weight of the gold loss (0..1).")] = None,
    ema_decay: Annotated[float | None, typer.Option(min=0.0, max=0.9999, help="Keep an exponential moving average of the weights with this decay per step (e.g. 0.995); 0: off.")] = None,
    seed: Annotated[int | None, typer.Option(min=0)] = None,
    pretrain_unlabelled: Annotated[bool | None, typer.Option("--pretrain-unlabelled/--no-pretrain-unlabelled", help="TMKD stage 1 on teacher-scored unlabelled pairs.")] = None,
    unlabelled: Annotated[str | None, typer.Option(help="TMKD stage 1 on this file of unlabelled pairs (JSONL/TSV/CSV/Parquet; consecutive rows with one query are its candidates), streamed; replaces the built-in pool.")] = None,
    unlabelled_passes: Annotated[int | None, typer.Option(min=1, help="Stage 1: passes over its pool, built-in or --unlabelled (default 1).")] = None,
    unlabelled_teachers: Annotated[str | None, typer.Option(help="Stage 1: comma-separated teachers that label its pool (some of --teachers; default all). mkdm heads of the others learn those teachers' mean in stage 1.")] = None,
    pool_hard_negatives: Annotated[int | None, typer.Option(min=0, help="Built-in stage-1 pool: similar sentences of other documents per train question (default 5).")] = None,
    pool_pseudo_queries: Annotated[int | None, typer.Option(min=0, help="Built-in stage-1 pool: sentences per document used as queries against its other sentences (default 0).")] = None,
    rehearse: Annotated[float | None, typer.Option(min=0.0, max=10.0, help="Labelled stage: teacher-only batches from the unlabelled pool (built-in or --unlabelled) per labelled batch, mixed in (e.g. 0.5); 0: off.")] = None,
    stage1_mix: Annotated[str | None, typer.Option(help="Serve (1-w) x the labelled stage's weights + w x TMKD stage 1's (WiSE-FT): a share w from 0 to 1 (0: off, the default), or dev: the share of 0, 0.1 .. 1 with the best dev MAP.")] = None,
    limit_train_queries: Annotated[int | None, typer.Option(min=1, help="Only the first N train queries.")] = None,
    eval_also: Annotated[list[str] | None, typer.Option("--eval-also", help="Extra validation data, e.g. trecqa:dev (never trained on).")] = None,
    name: Annotated[str | None, typer.Option(help="Artifact name (default: PIPELINE-MODE-sSEED).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: $QADISTILL_HOME/artifacts/NAME).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an artifact of the same name that was built before.")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Distil teachers into a student (MKDM and baselines), evaluate it and save a Hub-style folder in the zoo."""
    from qadistill.paths import check_name
    from qadistill.registry import Registry
    from qadistill.store import Store

    if name is not None:
        check_name(name)  # before anything else: the name becomes a folder under the home
    share = _share(stage1_mix)
    store = Store.open()
    reg = Registry(store=store)
    recipe = _recipe(reg, pipeline, teachers, student,
                     {"mode": mode.value if mode else None, "loss": loss.value if loss else None, "list_size": list_size,
                      "precision": precision.value if precision else None, "heads": heads.value if heads else None,
                      "head_combine": head_combine.value if head_combine else None, "epochs": epochs, "max_length": max_length,
                      "batch_size": batch_size, "learning_rate": lr, "temperature": temperature, "alpha": alpha, "seed": seed, "ema_decay": ema_decay,
                      "pretrain_unlabelled": pretrain_unlabelled, "unlabelled_passes": unlabelled_passes,
                      "unlabelled_teachers": None if unlabelled_teachers is None else [t.strip() for t in unlabelled_teachers.split(",") if t.strip()],
                      "pool_hard_negatives": pool_hard_negatives, "pool_pseudo_queries": pool_pseudo_queries, "rehearse": rehearse,
                      "stage1_mix": share},
                     {"name": data or None, "limit_train_queries": limit_train_queries or None, "dev": dev, "test": test, "split_seed": split_seed,
                      "unlabelled": unlabelled})
    res = _run(recipe, reg, store, name=name, out_dir=out, resume=resume, extra_evals=eval_also or [], overwrite=overwrite)
    if "rank" in res.metrics:  # a non-main process of `accelerate launch`: rank 0 reports
        return
    _report(res, recipe.distill.mode, fmt)


def _share(value: str | None) -> float | str | None:
    """--stage1-mix as the recipe takes it: a number, or "dev"."""
    from qadistill.errors import UserInputError

    if value is None or value.strip().lower() == "dev":
        return value and "dev"
    try:
        return float(value)
    except ValueError:
        raise UserInputError(f"--stage1-mix {value!r} is neither a share nor dev",
                             "give a share of stage 1's weights from 0 to 1 (e.g. --stage1-mix 0.3), or --stage1-mix dev") from None


def _run(recipe, reg, store, **options):
    """run_distill under a progress display; Ctrl-C becomes one line saying what was kept and how to continue."""
    from qadistill.distill import run_distill
    from qadistill.errors import InterruptedRunError
    from qadistill.progress import RichProgress

    cmd = shlex.join(["qadistill", *sys.argv[1:]]) if sys.argv and "qadistill" in sys.argv[0] else "qadistill distill"  # a path with spaces stays one word
    try:
        with RichProgress() as prog:
            return run_distill(recipe, reg, store, progress=prog, command=cmd, notify=lambda msg: err_console().print(msg), **options)
    except KeyboardInterrupt as exc:
        if getattr(exc, "saved", None):
            raise InterruptedRunError(f"interrupted after {exc.saved} was saved and registered: nothing to resume",
                                      f"see it with `qadistill zoo show {exc.saved}`", exc) from None
        if getattr(exc, "checkpoint", True):
            raise InterruptedRunError("interrupted: a checkpoint was saved", "continue with the same command plus --resume", exc) from None
        raise InterruptedRunError("interrupted before training started: finished teacher scores are cached",
                                  "run the same command again: the teacher scores computed so far are reused", exc) from None


def _recipe(reg, pipeline: str | None, teachers: str | None, student: str | None, distill: dict, data: dict):
    """The pipeline recipe (or an empty one) with the command line's options over it, parsed and its references checked."""
    from qadistill.recipes import parse_recipe, recipe_to_dict

    base: dict = recipe_to_dict(reg.recipe(pipeline, "pipeline")) if pipeline else {"kind": "pipeline", "name": "custom", "teachers": []}
    if teachers is not None:
        base["teachers"] = [t.strip() for t in teachers.split(",") if t.strip()]
    if student:
        base["student"] = student
    base.setdefault("distill", {}).update({k: v for k, v in distill.items() if v is not None})
    if base["distill"].get("mode") == "gold":
        if base.get("teachers"):
            err_console().print(f"note: --mode gold trains on the gold labels only: the teachers ({', '.join(base['teachers'])}) are not used")
        base["teachers"] = []
    base.setdefault("data", {}).update({k: v for k, v in data.items() if v is not None})
    recipe = parse_recipe(base, "command line" if not pipeline else f"pipeline '{pipeline}' + options")
    reg.check_references(recipe, "command line")
    return recipe


def _report(res, mode: str, fmt: Format) -> None:
    """The metrics per data set as a table (or JSON), where the model was saved on stderr."""
    from qadistill.metrics import fmt as fmt_metric

    if fmt is Format.json:
        print_json({"name": res.name, "path": res.path, **res.metrics})
        return
    rows = [[m.get("data", spec), *(fmt_metric(m.get(k)) for k in ("map", "mrr", "mrr@10", "ndcg@10", "p@1", "auc")), m["queries"]]
            for spec, m in res.metrics["metrics"].items() if "map" in m]
    out_console().print(table(f"{res.name} ({res.metrics['parameters'] / 1e6:.1f}M params, {mode})",
                              ["data", "MAP", "MRR", "MRR@10", "NDCG@10", "P@1", "AUC", "queries"], rows,
                              no_wrap=("MAP", "MRR", "MRR@10", "NDCG@10", "P@1", "AUC", "queries")))
    m = res.metrics
    before = m.get("train_seconds_before_resume") or 0.0
    times = (f"train {m['train_seconds']:.0f}s, {before:.0f}s of it before --resume; this process {m['total_seconds']:.0f}s in all"
             if before else f"train {m['train_seconds']:.0f}s, total {m['total_seconds']:.0f}s")
    mix = m.get("stage1_mix")
    if mix:
        how = "chosen on dev" if mix["setting"] == "dev" else "set"
        err_console().print(f"served weights: stage-1 share {mix['share']:g} ({how}): dev MAP {fmt_metric(mix['dev_map'])}, "
                            f"{fmt_metric(mix['dev_map_unmixed'])} without stage 1 mixed in ({mix['fitted_on']})")
    err_console().print(f"saved to {res.path}  ({times})")
