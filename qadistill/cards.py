"""Model cards: the README.md that distill writes into a student folder, and the Hub card that `zoo push` uploads."""

from __future__ import annotations

import json
from pathlib import Path

from qadistill.metrics import fmt

INDEXED = ("map", "mrr", "mrr@10", "ndcg@10")  # the metrics a card's model-index lists
TABLED = ("map", "mrr", "mrr@10", "ndcg@10", "p@1", "auc")  # the columns of its results table


def _combination(info: dict) -> str:
    """How the card says the heads give the score: the mean, or the learned weights and what they did on dev."""
    w, c = info.get("head_weights"), info.get("head_combination")
    if not c:
        return "the mean of the heads"
    kept = "kept" if c.get("kept") else "not better than the mean, so the mean is served"
    return (f"weights {', '.join(f'{x:.2f}' for x in (w or c['weights']))} fitted on {c.get('fitted_on', 'dev')} "
            f"(dev MAP {fmt(c.get('map_learned'))} vs mean {fmt(c.get('map_mean'))}: {kept})")


def model_card(info: dict) -> str:
    """The README.md of a distilled student (``info``: what distill writes to metrics.json): Hub metadata with a
    model-index of its test metrics, then how to load it, its results and how it was made."""
    return card_metadata(info) + "\n" + card_body(info)


def card_metadata(info: dict) -> str:
    """The YAML front matter: library, tags, datasets, base models (the teachers from the Hub), model-index."""
    m = info["metrics"]
    base_models = [src["repo_id"] for src in ((t.get("source") or {}) for t in info["teachers"]) if src.get("type") == "hub"]
    test_ds, _, test_split = m["test"].get("data", "wikiqa:test").rpartition(":")
    is_wikiqa = test_ds == "wikiqa"
    index = [f"    - type: {k}\n      value: {m['test'][k]:.4f}" for k in INDEXED if m["test"].get(k) is not None]
    yaml = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        "- cross-encoder",
        "- reranker",
        "- knowledge-distillation",
        "- qadistill",
        *(["datasets:", "- microsoft/wiki_qa"] if is_wikiqa else []),
        "language:",
        "- en",
    ]
    if base_models:
        yaml += ["base_model:"] + [f"- {b}" for b in base_models]
    yaml += [
        "model-index:",
        f"- name: {info['name']}",
        "  results:",
        "  - task:",
        "      type: text-ranking",
        "    dataset:",
        f"      name: {'WikiQA' if is_wikiqa else Path(test_ds).name}",
        f"      type: {'microsoft/wiki_qa' if is_wikiqa else 'local'}",
        f"      split: {test_split}",
        "    metrics:",
        *index,
        "---",
    ]
    return "\n".join(yaml)


def _pool_note(info: dict) -> str:
    """The "how it was made" line of TMKD stage 1's pool: the user's file, or the one built from the train texts."""
    u, d = info.get("unlabelled"), info["pipeline"].get("distill", {})
    chosen = d.get("unlabelled_teachers")
    by = f"; labelled by {', '.join(f'`{t}`' for t in chosen)} only" if chosen else ""
    if u:
        return (f"\n- TMKD stage 1 pool: `{u['path']}` ({u['pairs']} unlabelled pairs, {u['queries']} queries"
                f"{'' if u.get('lists', u['queries']) == u['queries'] else ' in ' + str(u['lists']) + ' candidate lists'}, sha256 "
                f"`{u['sha256'][:16]}…`), {u['passes']} pass(es), streamed in shards of {u['shard_pairs']}{by}")
    pairs = (info.get("stage1") or {}).get("pool_pairs")
    if not pairs:
        return ""
    return (f"\n- TMKD stage 1 pool: {pairs} teacher-labelled pairs built from the train split's texts (each question with "
            f"its own document's sentences, {d.get('pool_hard_negatives', 5)} similar and 3 random sentences of other "
            f"documents, titles as queries, {d.get('pool_pseudo_queries', 0)} pseudo-queries per document), "
            f"{d.get('unlabelled_passes', 1)} pass(es){by}")


def _dev_line(info: dict) -> str:
    """The card's dev figure: the best during training, or the served stage-1 mix's ([distill] stage1_mix)."""
    m, data = info.get("stage1_mix"), info.get("dev_data", "dev")
    if not m:
        return f"Best dev MAP during training: {fmt(info['dev_map'])} ({data})."
    return (f"Dev MAP of the served weights (stage-1 share {m['share']:g}): {fmt(m['dev_map'])}; the labelled stage's own: "
            f"{fmt(m['dev_map_unmixed'])} ({data}).")


def _mix_note(info: dict) -> str:
    """The "how it was made" line of a student whose served weights mix in TMKD stage 1's ([distill] stage1_mix)."""
    m = info.get("stage1_mix")
    if not m:
        return ""
    how = "the share with the best dev MAP" if m["setting"] == "dev" else "the recipe's share"
    curve = ", ".join(f"{c['share']:g}: {fmt(c['map'])}" for c in m["dev_curve"])
    return (f"\n- served weights: {1 - m['share']:g} x the labelled stage's + {m['share']:g} x TMKD stage 1's last "
            f"(WiSE-FT; {how}); dev MAP by stage-1 share ({m['fitted_on']}): {curve}")


def _rehearsal_note(info: dict) -> str:
    """The "how it was made" line of a labelled stage that rehearsed the unlabelled pool ([distill] rehearse)."""
    r = (info.get("stage2") or {}).get("rehearsal")
    if not r:
        return ""
    src = f"`{info['unlabelled']['path']}`" if info.get("unlabelled") else "the pool built from the train split's texts"
    return (f"\n- labelled stage with rehearsal: {r['ratio']:g} teacher-only batch(es) of {src} per labelled batch "
            f"({sum(r['batches_per_epoch'])} of its {r['steps']} steps, drawn from {r['pairs_held']} pairs held)")


def _continue_note(init: dict | None) -> str:
    """The "how it was made" line of a student that started from a built one as it is (student init type continue)."""
    if not init or init.get("type") != "continue":
        return ""
    return (f"\n- continued from `{init['model']}` as built (its encoder, every head from its score; its own card says how "
            f"it was made), then this run")


def _prune_note(pr: dict | None) -> str:
    """The "how it was made" line of a student that started from a pruned one (metrics.json ``pruned``)."""
    if not pr:
        return ""
    changes = []
    if pr.get("kept_importance"):
        kept = ", ".join(f"{k:.0%}" for k in pr["kept_importance"])
        changes.append(f"feed-forward width {pr['intermediate_before']} -> {pr['intermediate_after']} in every layer (units "
                       f"ranked by first-order importance on {pr['queries']} train questions, {pr['pairs']} pairs; "
                       f"importance kept per layer {kept})")
    if pr.get("heads_before") is not None and pr.get("heads_after") != pr.get("heads_before"):
        changes.append(f"attention heads {pr['heads_before']} -> {pr['heads_after']} (adjacent heads merged, weights unchanged)")
    if pr.get("activation_before") is not None and pr.get("activation_after") != pr.get("activation_before"):
        changes.append(f"activation {pr['activation_before']} -> {pr['activation_after']}")
    return f"\n- pruned from `{pr['source']}`: {'; '.join(changes)}, then this run as the recovery pass"


def _teachers_note(teachers: list, folds: dict) -> str:
    """The teachers, each cross-fitted one with its fold count (its own training questions were scored out of fold)."""
    return ", ".join(f"{t} (cross-fitted: {folds[t]} fold models scored its own training questions)" if folds.get(t) else t
                     for t in teachers) or "none"


def card_body(info: dict) -> str:
    """The card's prose: what the model is, how to load it, its results table, how it was made, the data licence."""
    p = info["pipeline"]
    d = p.get("distill", {})
    m = info["metrics"]
    teachers = p.get("teachers", [])
    rows = "\n".join(
        f"| {v.get('data', spec)} | {' | '.join(fmt(v.get(k)) for k in TABLED)} | {v['queries']} |"
        for spec, v in m.items() if "map" in v
    )
    sp = info.get("splits") or {}
    split_note = (f"\n{sp['dataset']} was split by query with seed {sp['seed']} (train/dev/test fractions "
                  f"{'/'.join(str(f) for f in sp['fractions'])}): test metrics never saw a training query."
                  if sp.get("how") == "split-by-query" else "")
    u = info.get("unlabelled")
    pool_note = _pool_note(info)
    licence = ("## Data licence\n\nTrained on WikiQA (Microsoft Research Data License Agreement, research use).\n"
               if sp.get("dataset", "wikiqa") == "wikiqa" else f"## Data\n\nTrained on `{sp.get('dataset')}`.\n")
    body = f"""
# {info['name']}

A {info['parameters'] / 1e6:.1f}M-parameter cross-encoder for query–passage relevance, distilled by
[qadistill](https://pypi.org/project/qadistill/) {info['qadistill_version']} with mode **{d.get('mode')}**
from {', '.join(f'`{t}`' for t in teachers) or 'gold labels only'} into the student `{p.get('student')}`
({info['heads']} head(s), folded into one linear head on save).

It loads as a plain `BertForSequenceClassification` with one logit (higher = more relevant):

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained("PATH_OR_REPO")
model = AutoModelForSequenceClassification.from_pretrained("PATH_OR_REPO")
enc = tok(["who wrote hamlet?"], ["Hamlet is a tragedy by William Shakespeare."], return_tensors="pt", truncation=True, max_length={info['max_length']})
score = model(**enc).logits[:, 0]
```

## Results (measured by qadistill at the end of training)

| data | MAP | MRR | MRR@10 | NDCG@10 | P@1 | ROC-AUC | queries |
|---|---|---|---|---|---|---|---|
{rows}

MAP/MRR/MRR@10/NDCG@10/P@1 count queries with at least one correct and one wrong candidate (the WikiQA convention).
{_dev_line(info)}{split_note}

## How it was made

- teachers: {_teachers_note(teachers, info.get('teacher_folds') or {})}; student init: `{json.dumps(info['student'].get('init'))}`
- mode {d.get('mode')}, epochs {d.get('epochs')}, batch {d.get('batch_size')}, lr {d.get('learning_rate')}, max length {d.get('max_length')},
  temperature {d.get('temperature')}, alpha {d.get('alpha')}, seed {d.get('seed')}, TMKD stage 1: {d.get('pretrain_unlabelled') or bool(u)}{pool_note}{_rehearsal_note(info)}{_mix_note(info)}
- objective {d.get('loss', 'pointwise')}; heads {info.get('head_kind', 'linear')} x {info.get('heads', 1)}, served as {_combination(info)}{_prune_note(info.get("pruned"))}{_continue_note(info['student'].get('init'))}
- train pairs: {info['train_pairs']}; training {info['train_seconds']:.0f} s, teacher scoring {info['teacher_scoring_seconds']:.0f} s,
  {info['threads']} threads on {info['machine']}
- command: `{info['command']}`

The full recipe is in `recipe.toml`, every figure in `metrics.json`.

{licence}
"""
    return body


HUB_DATASETS = {"wikiqa": ("WikiQA", "microsoft/wiki_qa"), "trecqa": ("trecqa", "trecqa")}


def _hub_dataset(label: str) -> tuple[str, str, str]:
    """(name, type, split) for a model-index entry from a metric's data label (``wikiqa:test``, ``/x/pairs.jsonl:test``):
    a user's own file is named by its file name with type ``local``, never as a public data set it is not."""
    ds, _, split = label.rpartition(":")
    if not ds:
        ds, split = label, "test"
    name, typ = HUB_DATASETS.get(ds, (Path(ds).name, "local"))
    return name, typ, split or "test"


def push_card(name: str, repo_id: str, metrics: dict, variants: list[dict], folder: Path) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    m = metrics.get("metrics", {})
    evals = []
    for spec, vals in m.items():
        if not isinstance(vals, dict) or "map" not in vals:
            continue
        ds_name, ds_type, split = _hub_dataset(vals.get("data") or (spec if ":" in spec else f"wikiqa:{spec}"))
        for metric in (k for k in INDEXED if vals.get(k) is not None):  # a student from before NDCG@10 has none
            evals.append(EvalResult(task_type="text-ranking", dataset_type=ds_type, dataset_name=ds_name, dataset_split=split,
                                    metric_type=metric, metric_value=round(float(vals[metric]), 4)))
    base = [t["source"]["repo_id"] for t in metrics.get("teachers", []) if (t.get("source") or {}).get("type") == "hub"]
    data = ModelCardData(
        library_name="transformers", pipeline_tag="text-classification", license="apache-2.0", language=["en"],
        datasets=sorted({e.dataset_type for e in evals if "/" in e.dataset_type}) or None,
        tags=["cross-encoder", "reranker", "knowledge-distillation", "qadistill", "onnx"],
        base_model=base or None, model_name=name, eval_results=evals or None,
    )
    old = (folder / "README.md").read_text() if (folder / "README.md").exists() else ""
    body = old.split("---", 2)[2] if old.startswith("---") and old.count("---") >= 2 else old
    if variants:
        rows = "\n".join(
            f"| `{v['file']}` | {v['variant']} | {(v.get('size_bytes') or 0) / 1e6:.1f} MB | "
            f"{(v.get('parity') or {}).get('max_abs_diff', float('nan')):.2e} | {(v.get('parity') or {}).get('map_delta_points', float('nan')):+.2f} |"
            for v in variants
        )
        body += f"""
## ONNX variants

Load with Optimum: `ORTModelForSequenceClassification.from_pretrained("{repo_id}", subfolder="onnx", file_name="model_int8_dynamic.onnx")`.

| file | variant | size | max abs logit diff vs PyTorch | MAP delta (points, dev sample) |
|---|---|---|---|---|
{rows}
"""
    if (folder / "recipe.toml").exists():
        body += "\n## Recipe\n\n```toml\n" + (folder / "recipe.toml").read_text() + "```\n"
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body.replace("{{", "{ {").replace("}}", "} }"))
    return str(card)
