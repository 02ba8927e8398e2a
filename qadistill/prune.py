"""Structured compression of a built student, FastFormers-style (arXiv 2010.13382): rank each layer's feed-forward
units by first-order importance and keep the top ``k`` of every layer, merge adjacent attention heads into fewer wider
ones, or switch the activation to the tanh GELU. The result is a plain ``BertConfig`` (loads anywhere, exports and
quantizes like any student). The distillation run that starts from it (``[init] type = "prune"`` in a student recipe)
is the recovery pass.

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
    kept_importance: list[float]  # per layer: share of the layer's total importance in the kept units ([] if not pruned)
    heads_before: int | None = None
    heads_after: int | None = None
    activation_before: str | None = None
    activation_after: str | None = None

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


class UnbuiltSourceError(UserInputError):
    """A prune / continue init names a student that is not built (yet): building it is the way out."""


def source_folder(ref: str, registry) -> Path:
    """The folder of the built student ``ref`` (a zoo artifact or a folder): a one-logit BERT sequence classifier."""
    from qadistill.errors import UnknownNameError

    try:
        m = registry.resolve(ref, use="start from a built student (a `qadistill distill` artifact) or its folder", recipes=(),
                             model_folders_only=True)
    except UnknownNameError:
        raise UnbuiltSourceError(f"init.model '{ref}' is not a built student yet",
                             f"build it first (`qadistill distill ... --name {ref}`), or name a student folder") from None
    if m.kind not in ("student-model", "folder"):
        article = "an" if m.kind[:1] in "aeiou" else "a"
        raise UserInputError(f"init.model '{ref}' is {article} {m.kind}, not a built student", "name a `qadistill distill` artifact or its folder")
    return m.folder


def _load_student(folder: Path):
    """(one-logit ``BertForSequenceClassification``, tokenizer) of the built student in ``folder`` (checksums checked)."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from qadistill.integrity import load_pretrained

    return load_pretrained(BertForSequenceClassification, folder), AutoTokenizer.from_pretrained(str(folder))


def continued_encoder(folder: Path):
    """(BertModel with its pooler, tokenizer, classifier) of the built student in ``folder``, unchanged: a continue
    init, whose run starts every head from the source's served score (the classifier's one-logit ``nn.Linear``)."""
    check_source(folder, "continue")
    model, tok = _load_student(folder)
    return model.bert, tok, model.classifier


def _reconfigured(bert, **changes):
    """A new ``BertModel`` like ``bert`` with config ``changes`` that leave every weight's shape as it is, the weights
    copied unchanged (strict load: a change that reshaped a weight fails here)."""
    from transformers import BertModel

    cfg = bert.config.__class__(**{**bert.config.to_dict(), **changes})
    out = BertModel(cfg, add_pooling_layer=bert.pooler is not None)
    out.load_state_dict(bert.state_dict(), strict=True)
    return out


def merge_heads(bert, heads: int):
    """A new ``BertModel`` like ``bert`` with ``heads`` attention heads: each new head is ``old // heads`` adjacent old
    heads side by side (their Q/K/V slices are contiguous in every projection), so every weight is copied unchanged;
    only the softmax now runs over the merged head. Expected logit scale is kept: q·k over k·d dims scaled by
    1/sqrt(k·d) has the variance of one d-dim head's q·k scaled by 1/sqrt(d) when the heads' products are independent."""
    old = bert.config.num_attention_heads
    if heads >= old or old % heads:
        raise ValueError(f"{old} heads cannot merge into {heads}: use a divisor of {old} below it")
    return _reconfigured(bert, num_attention_heads=heads)


def with_activation(bert, activation: str):
    """``bert`` with its feed-forward activation set to ``activation`` (config and modules; weights unchanged)."""
    return _reconfigured(bert, hidden_act=activation)


def describe(init) -> str:
    """What a PruneInit changes, in a few words ("FFN 768, 6 heads, gelu_new")."""
    parts = [f"FFN {init.intermediate_size}" if init.intermediate_size is not None else "",
             f"{init.attention_heads} heads" if init.attention_heads is not None else "", init.activation or ""]
    return ", ".join(x for x in parts if x)


def check_source(folder: Path, verb: str = "prune") -> dict:
    """Before any work: ``folder`` holds a one-logit BERT student (what a prune or continue init starts from); its config."""
    import json

    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{folder}/config.json cannot be read: {exc}", f"{verb} a student built by `qadistill distill`") from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "bert" or len(cfg.get("id2label") or {"0": 0}) != 1:
        raise UserInputError(f"{folder} is not a one-logit BERT student", f"{verb} a student built by `qadistill distill`")
    if not any((folder / w).is_file() for w in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        onnx = sorted(p.name for p in folder.glob("*.onnx"))
        what = f"an ONNX export ({', '.join(onnx)}), which cannot be trained on" if onnx else "no PyTorch weights (model.safetensors)"
        raise UserInputError(f"{folder} holds {what}", f"{verb} the student it was exported from (its name, without the variant suffix)")
    return cfg


def check_init(folder: Path, init) -> None:
    """Before any work: ``folder`` is a one-logit BERT student that ``init`` (a PruneInit) really changes: a smaller
    feed-forward width, a divisor of its head count below it, another activation."""
    cfg = check_source(folder)
    width = int(cfg.get("intermediate_size", 0))
    if init.intermediate_size is not None and init.intermediate_size >= width:
        raise UserInputError(f"init.intermediate_size {init.intermediate_size} does not prune {folder.name} (it has {width} units)",
                             f"use fewer than {width}, e.g. {width // 2}, or leave it out")
    heads, hidden = int(cfg.get("num_attention_heads", 0)), int(cfg.get("hidden_size", 0))
    if init.attention_heads is not None and (init.attention_heads >= heads or heads % init.attention_heads):
        options = [d for d in range(1, heads) if heads % d == 0 and hidden % d == 0]
        raise UserInputError(f"init.attention_heads {init.attention_heads} does not merge the {heads} heads of {folder.name}",
                             f"use one of {', '.join(map(str, options))} (a divisor of {heads} below it), or leave it out")
    if init.activation is not None and init.activation == cfg.get("hidden_act"):
        raise UserInputError(f"init.activation {init.activation!r} is already the activation of {folder.name}", "leave it out")


def pruned_encoder(folder: Path, init, pairs: list[QAPair], max_length: int, source: str | None = None):
    """(reshaped BertModel with its pooler, tokenizer, PruneReport, classifier) from the built student in ``folder``,
    as ``init`` (a PruneInit) says; the classifier (its one-logit ``nn.Linear``) lets the recovery pass start every
    head from the source's score. ``source``: how the report names the source (the zoo name; a card must not carry a
    local path), default the folder's name."""
    check_init(folder, init)
    model, tok = _load_student(folder)
    width, heads, act = model.config.intermediate_size, model.config.num_attention_heads, model.config.hidden_act
    encoder, kept, used = model.bert, [], []
    if init.intermediate_size is not None:
        importance = ffn_importance(model, tok, pairs, max_length)
        keep = keep_top(importance, init.intermediate_size)
        kept = [float(s[k].sum() / s.sum()) if float(s.sum()) > 0 else 0.0 for s, k in zip(importance, keep)]
        encoder, used = prune_ffn(encoder, keep), pairs
    if init.attention_heads is not None:
        encoder = merge_heads(encoder, init.attention_heads)
    if init.activation is not None:
        encoder = with_activation(encoder, init.activation)
    queries = len({p.query_id for p in used})
    report = PruneReport(source or folder.name, width, encoder.config.intermediate_size, len(used), queries, kept,
                         heads, encoder.config.num_attention_heads, str(act), str(encoder.config.hidden_act))
    return encoder, tok, report, model.classifier
