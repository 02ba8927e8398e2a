from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import Format, FormatOpt, err_console, out_console, print_json, table
from qadistill.cli.errors import handle_errors


@handle_errors
def teach(
    recipe: Annotated[str, typer.Argument(help="A cross-encoder teacher recipe with `finetune_from` (e.g. minilm-l6-cross-wikiqa).")],
    data: Annotated[str, typer.Option(help="Labelled data: wikiqa or a file path (a file alone is split by query; its dev part selects the weights).")] = "wikiqa",
    dev: Annotated[str | None, typer.Option(help="With a --data file: the dev file that selects the weights (else a by-query split).")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    lr: Annotated[float, typer.Option("--lr", min=1e-7, max=1.0)] = 3e-5,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    max_length: Annotated[int | None, typer.Option(min=8, help="Default: the recipe's max_length.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 42,
    eval_every: Annotated[int, typer.Option(min=0, help="Dev evaluation every N steps (0: each epoch end).")] = 0,
    patience: Annotated[int, typer.Option(min=1, help="Stop after this many dev evaluations without improvement.")] = 2,
    train_filter: Annotated[str, typer.Option(help="with-positive (questions that have an answer) or all.")] = "with-positive",
    limit_train_queries: Annotated[int | None, typer.Option(min=1, help="Only the first N train queries (smoke runs).")] = None,
    distill_from: Annotated[str | None, typer.Option(help="Also learn these teachers' mean calibrated logit as a soft target (comma-separated zoo teachers).")] = None,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="With --distill-from: weight of the gold label (soft target 1 - alpha).")] = 0.5,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: $QADISTILL_HOME/artifacts/NAME).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Fine-tune a cross-encoder teacher on labelled pairs and register it in the zoo."""
    from qadistill.errors import UserInputError
    from qadistill.finetune import FinetuneConfig, run_teach
    from qadistill.metrics import fmt as fmt_metric
    from qadistill.progress import RichProgress
    from qadistill.recipes import TeacherRecipe
    from qadistill.registry import Registry
    from qadistill.sources import resolve_source
    from qadistill.store import Store
    from qadistill.teachers import teacher_from_recipe

    if train_filter not in ("with-positive", "all"):
        raise UserInputError(f"--train-filter {train_filter!r} is not allowed", "use with-positive or all")
    store = Store.open()
    reg = Registry(store=store)
    r = reg.recipe(recipe, "teacher")
    assert isinstance(r, TeacherRecipe)
    if r.finetune_from is None:
        raise UserInputError(f"'{recipe}' has no finetune_from: it is used as it is", "teach a recipe such as minilm-l6-cross-wikiqa")
    base = reg.recipe(r.finetune_from, "teacher")
    base_folder = resolve_source(base.source)
    soft_names = [t.strip() for t in (distill_from or "").split(",") if t.strip()]
    if recipe in soft_names:
        raise UserInputError(f"--distill-from names '{recipe}' itself", "name other teachers, e.g. --distill-from all-mpnet-base-v2")
    soft_teachers = [teacher_from_recipe(reg.recipe(t, "teacher"), reg) for t in soft_names]  # type: ignore[arg-type]
    cfg = FinetuneConfig(data=data, epochs=epochs, learning_rate=lr, batch_size=batch_size, max_length=max_length or r.max_length,
                         seed=seed, eval_every=eval_every, patience=patience, train_filter=train_filter,
                         limit_train_queries=limit_train_queries, distill_from=soft_names, alpha=alpha, dev=dev)
    m = run_teach(store, r, base_folder, cfg, out_dir=out, resume=resume, soft_teachers=soft_teachers, progress=RichProgress())
    if fmt is Format.json:
        print_json(m)
        return
    out_console().print(table(f"teach {recipe}", ["field", "value"], [
        ["folder", m["path"]], ["best dev MAP", fmt_metric(m["dev_map"])], ["steps", m["steps"]], ["train pairs", m["train_pairs"]],
        ["train seconds", f"{m['train_seconds']:.0f}"], ["stopped early", m["stopped_early"]],
    ]))
    err_console().print(f"next: qadistill eval {recipe} --data {data} --split test")

