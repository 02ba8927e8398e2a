"""Structured pruning of a built student's feed-forward layers, FastFormers-style (arXiv 2010.13382): rank each layer's
intermediate units by first-order importance and keep the top ``k`` of every layer, so the result is a plain
``BertConfig`` with a smaller ``intermediate_size`` (loads anywhere, exports and quantizes like any student). The
distillation run that starts from it (``[init] type = "prune"`` in a student recipe) is the recovery pass.

Importance of unit j (Michel et al. 2019, as FastFormers applies it to FFN units): a mask m_j = 1 multiplies the unit's
activation; |dL/dm_j| = |sum over tokens of a_j * dL/da_j| per batch, summed over batches, with L the gold BCE of the
student's one logit on train pairs only (never dev or test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qadistill.data import QAPair
from qadistill.errors import UserInputError


@dataclass
class PruneReport:
    """What pruning did: the kept width, the importance mass kept per layer, and the data it was ranked on."""

    source: str
    intermediate_before: int
    intermediate_after: int
    pairs: int
    queries: int
    kept_importance: list[float]  # per layer: share of the layer's total importance in the kept units

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def ffn_importance(model, tokenizer, pairs: list[QAPair], max_length: int, batch_size: int = 32) -> list:
    """Per encoder layer, a [intermediate_size] tensor of unit importances for a one-logit
    ``BertForSequenceClassification`` on labelled ``pairs`` (eval mode: no dropout)."""
    import torch

    from qadistill.train import length_order

    if any(p.label is None for p in pairs):
        raise UserInputError("pruning ranks feed-forward units with the gold loss: the train pairs need labels",
                             "prune from a pipeline whose train split is labelled")
    layers = model.bert.encoder.layer
    masks = [torch.ones(layer.intermediate.dense.out_features, requires_grad=True) for layer in layers]
    scores = [torch.zeros(m.shape[0]) for m in masks]
    hooks = [layer.intermediate.register_forward_hook(lambda _m, _i, out, i=i: out * masks[i]) for i, layer in enumerate(layers)]
    qs, ps = [p.query for p in pairs], [p.passage for p in pairs]
    order = length_order(tokenizer, qs, ps, max_length)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([qs[i] for i in idx], [ps[i] for i in idx], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            y = torch.tensor([float(pairs[i].label) for i in idx])
            logit = model(**enc).logits.reshape(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="sum")
            grads = torch.autograd.grad(loss, masks)
            for s, g in zip(scores, grads):
                s += g.abs()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return scores


def keep_top(importance, k: int) -> list:
    """Indices (ascending) of the ``k`` most important units of each layer."""
    import torch

    return [torch.sort(torch.topk(s, k).indices).values for s in importance]


def prune_ffn(bert, keep: list):
    """A new ``BertModel`` like ``bert`` whose layer l keeps only the intermediate units ``keep[l]`` (same count in every
    layer): rows of the up-projection and its bias, columns of the down-projection; everything else copied as is."""
    import torch
    from transformers import BertModel

    widths = {len(k) for k in keep}
    if len(widths) != 1:
        raise ValueError(f"every layer must keep the same number of units, got {sorted(widths)}")
    cfg = bert.config.__class__(**bert.config.to_dict())
    cfg.intermediate_size = widths.pop()
    pruned = BertModel(cfg, add_pooling_layer=bert.pooler is not None)
    state = bert.state_dict()
    with torch.no_grad():
        for i, idx in enumerate(keep):
            pre = f"encoder.layer.{i}."
            state[pre + "intermediate.dense.weight"] = state[pre + "intermediate.dense.weight"][idx].clone()
            state[pre + "intermediate.dense.bias"] = state[pre + "intermediate.dense.bias"][idx].clone()
            state[pre + "output.dense.weight"] = state[pre + "output.dense.weight"][:, idx].clone()
    pruned.load_state_dict(state, strict=True)
    return pruned


def source_folder(ref: str, registry) -> Path:
    """The folder of the built student ``ref`` (a zoo artifact or a folder): a one-logit BERT sequence classifier."""
    from qadistill.errors import UnknownNameError

    try:
        m = registry.resolve(ref, use="prune a built student (a `qadistill distill` artifact) or its folder", recipes=(),
                             model_folders_only=True)
    except UnknownNameError:
        raise UserInputError(f"init.model '{ref}' is not a built student yet",
                             f"build it first (`qadistill distill ... --name {ref}`), or name a student folder") from None
    if m.kind not in ("student-model", "folder"):
        raise UserInputError(f"init.model '{ref}' is a {m.kind}, not a built student", "name a `qadistill distill` artifact or its folder")
    return m.folder


def check_width(folder: Path, intermediate_size: int) -> None:
    """Before any work: ``folder`` is a one-logit BERT student that ``intermediate_size`` really prunes."""
    import json

    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{folder}/config.json cannot be read: {exc}", "prune a student built by `qadistill distill`") from None
    if cfg.get("model_type") != "bert" or len(cfg.get("id2label") or {"0": 0}) != 1:
        raise UserInputError(f"{folder} is not a one-logit BERT student", "prune a student built by `qadistill distill`")
    width = int(cfg.get("intermediate_size", 0))
    if intermediate_size >= width:
        raise UserInputError(f"init.intermediate_size {intermediate_size} does not prune {folder.name} (it has {width} units)",
                             f"use fewer than {width}, e.g. {width // 2}")


def pruned_encoder(folder: Path, intermediate_size: int, pairs: list[QAPair], max_length: int, source: str | None = None):
    """(pruned BertModel with its pooler, tokenizer, PruneReport, classifier) from the built student in ``folder``; the
    classifier (its one-logit ``nn.Linear``) lets the recovery pass start every head from the source's score. ``source``:
    how the report names the source (the zoo name; a card must not carry a local path), default the folder's name."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from qadistill.integrity import load_pretrained

    check_width(folder, intermediate_size)
    model = load_pretrained(BertForSequenceClassification, folder)
    width = model.config.intermediate_size
    tok = AutoTokenizer.from_pretrained(str(folder))
    importance = ffn_importance(model, tok, pairs, max_length)
    keep = keep_top(importance, intermediate_size)
    kept = [float(s[k].sum() / s.sum()) if float(s.sum()) > 0 else 0.0 for s, k in zip(importance, keep)]
    encoder = prune_ffn(model.bert, keep)
    queries = len({p.query_id for p in pairs})
    return encoder, tok, PruneReport(source or folder.name, width, intermediate_size, len(pairs), queries, kept), model.classifier
