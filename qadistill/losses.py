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
