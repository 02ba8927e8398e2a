from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import Format, FormatOpt, err_console, out_console, print_json, table
from qadistill.cli.errors import handle_errors


@handle_errors
def teach(
    recipe: Annotated[str, typer.Argument(help="A cross-encoder teacher recipe with `finetune_from` (e.g. minilm-l6-cross-wikiqa).")],
    data: Annotated[str | None, typer.Option(help="Labelled data: wikiqa or a file path (a file alone is split by query; its dev part selects the weights). Default: the recipe's finetune table, else wikiqa.")] = None,
    dev: Annotated[str | None, typer.Option(help="With a --data file: the dev file that selects the weights (else a by-query split).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Default: the recipe's finetune table, else 2.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=1e-7, max=1.0, help="Default: the recipe's finetune table, else 3e-5.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Default: the recipe's finetune table, else 16.")] = None,
    max_length: Annotated[int | None, typer.Option(min=8, help="Default: the recipe's max_length.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Default: the recipe's finetune table, else 42.")] = None,
    eval_every: Annotated[int | None, typer.Option(min=0, help="Dev evaluation every N steps (0: each epoch end).")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Stop after this many dev evaluations without improvement.")] = None,
    train_filter: Annotated[str | None, typer.Option(help="with-positive (questions that have an answer) or all.")] = None,
    limit_train_queries: Annotated[int | None, typer.Option(min=1, help="Only the first N train queries (smoke runs).")] = None,
    distill_from: Annotated[str | None, typer.Option(help="Also learn these teachers' mean calibrated logit as a soft target (comma-separated zoo teachers).")] = None,
    alpha: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="With --distill-from: weight of the gold label (soft target 1 - alpha).")] = None,
    folds: Annotated[int | None, typer.Option(min=0, max=20, help="Cross-fit: also train K fold models (each without 1/K of the training queries) that score the teacher's own training queries, so a student distilled on them learns the teacher's judgement, not its memory; 0: off. Default: the recipe's finetune table, else 0.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: $QADISTILL_HOME/artifacts/NAME).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Fine-tune a cross-encoder teacher on labelled pairs and register it in the zoo."""
    from qadistill.errors import UserInputError
    from qadistill.finetune import FinetuneConfig, run_teach
    from qadistill.metrics import fmt as fmt_metric
    from qadistill.progress import RichProgress
    from qadistill.recipes import FinetuneSettings, TeacherRecipe, validation_problem
    from qadistill.registry import Registry
    from qadistill.sources import resolve_source
    from qadistill.store import Store
    from qadistill.teachers import teacher_from_recipe

    if train_filter is not None and train_filter not in ("with-positive", "all"):
        raise UserInputError(f"--train-filter {train_filter!r} is not allowed", "use with-positive or all")
    store = Store.open()
    reg = Registry(store=store)
    r = reg.recipe(recipe, "teacher")
    assert isinstance(r, TeacherRecipe)
    if r.finetune_from is None:
        raise UserInputError(f"'{recipe}' has no finetune_from: it is used as it is", "teach a recipe such as minilm-l6-cross-wikiqa")
    base = reg.recipe(r.finetune_from, "teacher")
    base_folder = resolve_source(base.source)
    given = {"data": data, "epochs": epochs, "learning_rate": lr, "batch_size": batch_size, "seed": seed, "eval_every": eval_every,
             "patience": patience, "train_filter": train_filter, "limit_train_queries": limit_train_queries, "alpha": alpha, "folds": folds,
             "distill_from": None if distill_from is None else [t.strip() for t in distill_from.split(",") if t.strip()]}
    from pydantic import ValidationError

    try:
        ft = FinetuneSettings(**{**(r.finetune.model_dump() if r.finetune else {}), **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as exc:  # e.g. --folds 1: one line naming the option, never a traceback
        field, msg = validation_problem(exc)
        raise UserInputError(f"--{(field or 'option').replace('_', '-')}: {msg}",
                             f"fix that option (or the [finetune] table of '{recipe}')") from None
    soft_names = ft.distill_from
    if recipe in soft_names:
        raise UserInputError(f"--distill-from names '{recipe}' itself", "name other teachers, e.g. --distill-from all-mpnet-base-v2")
    soft_teachers = [teacher_from_recipe(reg.recipe(t, "teacher"), reg) for t in soft_names]  # type: ignore[arg-type]
    cfg = FinetuneConfig(**ft.model_dump(), max_length=max_length or r.max_length, dev=dev)
    from qadistill.finetune import resume_note, teach_folder

    note = resume_note(teach_folder(recipe, out), resume)
    if note:
        err_console().print(note)
    cmd = shlex.join(["qadistill", *sys.argv[1:]]) if sys.argv and "qadistill" in sys.argv[0] else None  # for the resume hint
    m = run_teach(store, r, base_folder, cfg, out_dir=out, resume=resume, soft_teachers=soft_teachers, progress=RichProgress(),
                  command=cmd)
    if fmt is Format.json:
        print_json(m)
        return
    out_console().print(table(f"teach {recipe}", ["field", "value"], [
        ["folder", m["path"]], ["best dev MAP", fmt_metric(m["dev_map"])], ["steps", m["steps"]], ["train pairs", m["train_pairs"]],
        ["train seconds", f"{m['train_seconds']:.0f}"], ["stopped early", m["stopped_early"]],
        *([["fold models", f"{m['folds']['k']} (held-out MAP {', '.join(fmt_metric(x) for x in m['folds']['held_out_map'])})"]]
          if m.get("folds") else []),
    ]))
    err_console().print(f"next: qadistill eval {shlex.quote(recipe)} --data {shlex.quote(str(ft.data))} --split test")

