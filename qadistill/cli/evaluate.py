from __future__ import annotations

from typing import Annotated

import typer

from qadistill.cli._common import Format, FormatOpt, out_console, print_json, table
from qadistill.cli.errors import handle_errors
from qadistill.errors import UserInputError


@handle_errors
def eval_(
    models: Annotated[list[str] | None, typer.Argument(help="Zoo names, built artifacts or model folders.")] = None,
    teachers: Annotated[str | None, typer.Option(help="Comma-separated teachers: each is scored and so is their ensemble (mean calibrated logit).")] = None,
    data: Annotated[str, typer.Option(help="wikiqa, trecqa, a .tsv/.csv/.jsonl file, or hf:REPO_ID.")] = "wikiqa",
    split: Annotated[str | None, typer.Option(help="Split: a named dataset's own (default test); for a file `all` (default) or train/dev/test of its by-query split.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_length: Annotated[int | None, typer.Option(min=8, help="Override the model's max length.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Ranking metrics (MAP, MRR, P@1, accuracy, F1, ROC-AUC) of models or a teacher ensemble; scores are cached."""
    from qadistill.evaluate import evaluate
    from qadistill.progress import RichProgress
    from qadistill.registry import Registry
    from qadistill.store import Store

    names = list(models or []) + ([t.strip() for t in teachers.split(",") if t.strip()] if teachers else [])
    if not names:
        raise UserInputError("nothing to evaluate", "name a model, e.g. `qadistill eval all-minilm-l6-v2 --data wikiqa`")
    store = Store.open()
    with RichProgress() as prog:
        res = evaluate(names, Registry(store=store), data, split, ensemble=bool(teachers), batch_size=batch_size,
                       max_length=max_length, progress=prog, store=store)
    if fmt is Format.json:
        print_json(res)
        return
    cols = ["model", "MAP", "MRR", "P@1", "acc", "F1", "AUC", "queries", "seconds"]
    from qadistill.metrics import fmt

    rows = [[r["model"], *(fmt(r[k]) for k in ("map", "mrr", "p@1", "accuracy", "f1", "auc")), r["queries"], f"{r['seconds']:.1f}"] for r in res["rows"]]
    out_console().print(table(f"{res['data']}/{res['split']} ({res['stats']['pairs']} pairs)", cols, rows, no_wrap=tuple(cols)))
