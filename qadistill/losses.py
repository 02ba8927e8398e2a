"""Distillation losses as pure functions. Shapes: B = batch size, K = number of heads (one per teacher).

``y`` holds gold labels as floats with NaN where a pair is unlabelled (TMKD stage 1), so one function serves both stages.
"""

from __future__ import annotations


def soft_bce(student, teacher, temperature: float):
    """Soft binary cross-entropy of ``student`` [B, K] logits against the teacher's sigmoid at temperature T
    (``teacher`` [B, K] logits), scaled by T² so gradients keep their size as T changes. Returns a scalar.
    Minimal (0 gradient) when student == teacher."""
    import torch.nn.functional as F

    t = temperature
    return F.binary_cross_entropy_with_logits(student / t, (teacher / t).sigmoid(), reduction="mean") * (t * t)


def gold_bce(student, y):
    """BCE of ``student`` [B, K] logits against gold labels ``y`` [B] (0/1, NaN = unlabelled, ignored).
    Returns a scalar (0 when no pair in the batch is labelled)."""
    import torch
    import torch.nn.functional as F

    mask = ~torch.isnan(y)
    if not bool(mask.any()):
        return student.sum() * 0.0
    s = student[mask]
    target = y[mask].unsqueeze(1).expand_as(s)
    return F.binary_cross_entropy_with_logits(s, target, reduction="mean")


def distill_loss(student, teacher, y, temperature: float, alpha: float):
    """MKDM objective. ``student`` [B, K]; ``teacher`` [B, K] or None (gold mode); ``y`` [B] with NaN = unlabelled.

    Head k learns teacher k's soft label with weight (1 − alpha) and the gold label with weight alpha; the mean over
    heads is taken inside the BCE means. Without teachers the loss is gold BCE; on unlabelled pairs soft BCE alone.
    """
    import torch

    if teacher is None:
        return gold_bce(student, y)
    soft = soft_bce(student, teacher, temperature)
    labelled = ~torch.isnan(y)
    if alpha == 0 or not bool(labelled.any()):
        return soft
    # gold weight scaled by the labelled fraction so a mixed batch weighs each labelled pair the same
    frac = labelled.float().mean()
    return (1 - alpha) * soft + alpha * frac * gold_bce(student, y)


# --- ranking-aware objectives ------------------------------------------------------------------------------------
# ``group`` [B] (int) says which query each pair belongs to; the batches of a ranking loss keep a query's candidates
# together (train.grouped_batches). A group of one pair carries no ranking signal and adds nothing.

LOSSES = ("pointwise", "listwise", "margin-mse")  # the teacher objectives (recipes.DistillLoss, distill --loss)
PRECISIONS = ("fp32", "bf16", "auto")  # training arithmetic (train.resolve_precision); the recipe and CLI choices
MODES = ("gold", "single", "avg", "mkdm")  # how teachers map onto heads (recipes.DistillMode, distill --mode)
HEAD_KINDS = ("linear", "mlp")  # per-teacher heads (student.make_student_class, distill --heads)
HEAD_COMBINES = ("mean", "learned")  # how the heads give the served score (qadistill.heads, distill --head-combine)


def _groups(group):
    """Index tensors of the groups with at least two members."""
    import torch

    _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
    return [torch.nonzero(inverse == g).squeeze(1) for g in range(len(counts)) if counts[g] > 1]


def listwise_kl(student, teacher, group, temperature: float):
    """KL(teacher ‖ student) between softmaxes at temperature T over each query's candidates, per head: ``student`` and
    ``teacher`` [B, K] logits, ``group`` [B]. Mean over (group, head), scaled by T². Returns a scalar, 0 when no group
    has two members; minimal when the student's logits equal the teacher's up to a constant per group and head."""
    import torch

    t = temperature
    terms = []
    for idx in _groups(group):
        p = torch.log_softmax(teacher[idx] / t, dim=0)  # [n, K]
        q = torch.log_softmax(student[idx] / t, dim=0)
        terms.append((p.exp() * (p - q)).sum(0))  # [K]
    if not terms:
        return student.sum() * 0.0
    return torch.stack(terms).mean() * (t * t)


def margin_mse(student, teacher, group):
    """Margin-MSE (Hofstätter et al. 2020): for every two candidates i, j of one query, the squared error between the
    student's margin s_i − s_j and the teacher's t_i − t_j, per head. ``student``/``teacher`` [B, K], ``group`` [B].
    Mean over (pair of candidates, head). Returns a scalar (0 without a group of two)."""
    import torch

    terms = []
    for idx in _groups(group):
        ds = student[idx][:, None, :] - student[idx][None, :, :]  # [n, n, K]
        dt = teacher[idx][:, None, :] - teacher[idx][None, :, :]
        iu = torch.triu_indices(len(idx), len(idx), offset=1)
        terms.append(((ds - dt) ** 2)[iu[0], iu[1]].reshape(-1))
    if not terms:
        return student.sum() * 0.0
    return torch.cat(terms).mean()


def gold_listwise(student, y, group):
    """Softmax cross-entropy of each query's candidates against its gold labels (target = labels / their sum), per
    head: ``student`` [B, K], ``y`` [B] (NaN = unlabelled). Only groups with a positive and a negative count. Returns a
    scalar (0 when no group qualifies)."""
    import torch

    terms = []
    for idx in _groups(group):
        yy = y[idx]
        if bool(torch.isnan(yy).any()) or not (yy.max() > 0 and yy.min() == 0):
            continue
        target = (yy / yy.sum())[:, None]  # [n, 1]
        terms.append(-(target * torch.log_softmax(student[idx], dim=0)).sum(0))  # [K]
    if not terms:
        return student.sum() * 0.0
    return torch.stack(terms).mean()


def ranking_distill_loss(student, teacher, y, group, loss: str, temperature: float, alpha: float):
    """The MKDM objective with a ranking-aware teacher term: ``loss`` "listwise" (listwise_kl, gold by gold_listwise)
    or "margin-mse" (margin_mse, gold by gold_bce). Shapes as in distill_loss, plus ``group`` [B]. Without teachers
    the gold term alone; on unlabelled pairs the teacher term alone."""
    import torch

    gold = (lambda: gold_listwise(student, y, group)) if loss == "listwise" else (lambda: gold_bce(student, y))
    if teacher is None:
        return gold()
    if loss == "listwise":
        soft = listwise_kl(student, teacher, group, temperature)
    elif loss == "margin-mse":
        soft = margin_mse(student, teacher, group)
    else:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if alpha == 0 or not bool((~torch.isnan(y)).any()):
        return soft
    return (1 - alpha) * soft + alpha * gold()
