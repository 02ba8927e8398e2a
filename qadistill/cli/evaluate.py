from __future__ import annotations

from typing import Annotated

import typer

from qadistill.cli._common import Format, FormatOpt, dim, err_console, out_console, print_json, refuse_named_twice, table
from qadistill.cli.errors import handle_errors
from qadistill.errors import UserInputError


@handle_errors
def eval_(
    models: Annotated[list[str] | None, typer.Argument(help="Zoo names, built artifacts or model folders.")] = None,
    teachers: Annotated[str | None, typer.Option(help="Comma-separated teachers: each is scored and so is their ensemble (mean calibrated logit; the MODELS named beside them are scored alone).")] = None,
    data: Annotated[str, typer.Option(help="wikiqa, trecqa, a .tsv/.csv/.jsonl file, or hf:REPO_ID.")] = "wikiqa",
    split: Annotated[str | None, typer.Option(help="Split: a named dataset's own (default test; trecqa: dev); for a file `all` (default) or train/dev/test of its by-query split.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_length: Annotated[int | None, typer.Option(min=8, help="Override the model's max length.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Ranking metrics (MAP, MRR, MRR@10, NDCG@10, P@1, accuracy, F1, ROC-AUC) of models or a teacher ensemble; scores
    are cached."""
    from qadistill.evaluate import evaluate
    from qadistill.progress import RichProgress
    from qadistill.registry import Registry
    from qadistill.store import Store

    members = [t.strip() for t in teachers.split(",") if t.strip()] if teachers else []
    names = list(models or []) + members
    if not names:
        raise UserInputError("nothing to evaluate", "name a model, e.g. `qadistill eval all-minilm-l6-v2 --data wikiqa`")
    refuse_named_twice(names, "name each model or teacher once")  # an "ensemble" of a teacher with itself misleads
    store = Store.open()
    with RichProgress() as prog:
        res = evaluate(names, Registry(store=store), data, split, ensemble=members, batch_size=batch_size,
                       max_length=max_length, progress=prog, store=store)
    if fmt is Format.json:
        print_json({**res, "notes": eval_notes(res)})
        return
    _render(res)


# (header, key) of the table; under FULL_WIDTH columns the classification metrics (acc, F1, AUC) and the time go, so
# that an 80-column terminal keeps the ranking metrics and a 20-character model name (JSON keeps everything)
COLUMNS = (("model", "model"), ("MAP", "map"), ("MRR", "mrr"), ("MRR@10", "mrr@10"), ("NDCG@10", "ndcg@10"), ("P@1", "p@1"),
           ("acc", "accuracy"), ("F1", "f1"), ("AUC", "auc"), ("queries", "queries"), ("seconds", "seconds"))
NARROW = ("model", "MAP", "MRR", "MRR@10", "NDCG@10", "P@1", "queries")
FULL_WIDTH = 120


def _render(res: dict) -> None:
    from qadistill.metrics import fmt

    def cell(r: dict, key: str) -> str:
        if key == "model":
            return r["model"]
        if key == "queries":
            return str(r["queries"])
        if key == "seconds":
            return f"{r['seconds']:.1f}"
        return fmt(r.get(key))

    con = out_console()
    cols = [c for c in COLUMNS if con.width >= FULL_WIDTH or c[0] in NARROW]
    rows = [[cell(r, key) for _, key in cols] for r in res["rows"]]
    heads = [h for h, _ in cols]
    con.print(table(f"{res['data']}/{res['split']} ({res['stats']['pairs']} pairs)", heads, rows,
                    no_wrap=tuple(h for h in heads if h != "model")))  # a long model name wraps, the figures never do
    for note in eval_notes(res, heads):
        err_console().print(dim(note))
    hidden = [h for h, _ in COLUMNS if h not in heads]
    if hidden:
        err_console().print(dim(f"{con.width} columns: {', '.join(hidden)} not shown (a terminal of {FULL_WIDTH}+ columns, "
                            "or --format json)"))


def eval_notes(res: dict, heads: list[str] | None = None) -> list[str]:
    """Everything the figures need said beside them, as plain sentences: the table prints them under it, JSON carries
    them as `notes`. `heads`: the table's columns (None: all), so a note on a metric not shown is not printed."""
    heads = [h for h, _ in COLUMNS] if heads is None else heads
    notes = []
    reasons: dict[str, list[str]] = {}  # why a "-" is a "-": the data leaves the metric undefined (the same for every row)
    for r in res["rows"]:
        for key, why in (r.get("undefined") or {}).items():
            name = next((h for h, k in COLUMNS if k == key), key)
            if name in heads and name not in reasons.setdefault(why, []):
                reasons[why].append(name)
    notes += [f"{', '.join(names)} -: {why}" for why, names in reasons.items()]
    if "F1" in heads:
        none_over = [r["model"] for r in res["rows"] if r.get("predicted_correct") == 0 and r.get("f1") == 0.0]
        if none_over:
            notes.append(f"F1 0 for {', '.join(none_over)}: no pair scores over probability 0.5, the threshold of acc and "
                         "F1 (a ranking model's calibrated scores need not cross it; MAP and MRR do not use it)")
    notes += [f"{r['model']}: not recorded in the store ({r['unrecorded']}): `zoo show` keeps its figures at the length "
              "it is served" for r in res["rows"] if r.get("unrecorded")]
    for r in res["rows"]:
        if r.get("calibrated_on_this_split"):
            notes.append(f"{r['model']}: {', '.join(r['calibrated_on_this_split'])} calibrated on {res['data']}/"
                         f"{res['split']}'s labels, so the ensemble is scored on its own calibration data (each model's "
                         "ranking is not changed by it)")
        if r.get("batch_size"):
            notes.append(f"{r['model']}: dynamic int8 quantizes activations per batch, so its scores depend on the batch "
                         f"(scored at --batch-size {r['batch_size']}; another moves MAP by a few tenths)")
    return notes + length_notes(res["rows"], res["stats"].get("pairs")) + data_notes(res["stats"])


def length_notes(rows: list[dict], pairs: int | None) -> list[str]:
    """Which models saw pairs cut at their max length, and how many (the figures are of the cut pairs)."""
    notes = []
    for r in rows:
        n = r.get("over_length")
        if n:
            of = f" of {pairs}" if pairs else ""
            notes.append(f"{r['model']}: {n}{of} pairs are longer than its max length ({r['max_length']} tokens) and were "
                         "cut, longest-first (--max-length sets another, up to the model's limit)")
    return notes


def data_notes(stats: dict) -> list[str]:
    """What the table's counts leave out: the questions the ranking metrics skip, and passages kept twice."""
    notes = []
    scored, total = stats.get("queries_with_pos_and_neg"), stats.get("queries")
    if scored and total and scored < total:
        notes.append(f"queries: the {scored} of {total} with both a correct and a wrong candidate (the ranking metrics "
                     "score only those, as WikiQA's standard evaluation does)")
    if stats.get("repeated_passages"):
        n = stats["repeated_passages"]
        notes.append(f"{n} passage{'s' if n != 1 else ''} repeated for the same query (same text and label) kept as "
                     "separate candidates, as the file has them")
    return notes
