"""Students: a shared encoder with one output head per teacher (MKDM), built from a student recipe.

Initialisations: ``pretrained`` (a small encoder as it is, e.g. paraphrase-MiniLM-L3), ``truncate`` (the embeddings and
first k layers of a teacher such as MiniLM-L6) or ``config`` (random, for tests only).

The saved student is a plain Hugging Face ``BertForSequenceClassification`` with one logit: the mean (or learned
weighted mean) of K linear heads is itself a linear head, so folding is exact and the folder loads without qadistill
(transformers, Optimum's ORTModel, sentence-transformers' CrossEncoder).
"""

from __future__ import annotations

from pathlib import Path

from qadistill.errors import UserInputError
from qadistill.integrity import QuietTransformers, write_checksums
from qadistill.recipes import ConfigInit, PretrainedInit, StudentRecipe, TeacherRecipe, TruncateInit
from qadistill.sources import resolve_source


def encoder_folder_for(recipe: StudentRecipe, registry) -> Path:
    init = recipe.init
    if isinstance(init, PretrainedInit):
        return resolve_source(init.source)
    ref = init.model if isinstance(init, TruncateInit) else init.vocab_from
    t = registry.recipe(ref, "teacher")
    assert isinstance(t, TeacherRecipe)
    if t.source is None:
        raise UserInputError(f"student init '{ref}' has no source of its own", "initialise from a packaged or Hub encoder")
    return resolve_source(t.source)


def build_encoder(recipe: StudentRecipe, registry, seed: int = 0):
    """(BertModel with a pooler, tokenizer) for the student's initialisation."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertConfig, BertModel

    folder = encoder_folder_for(recipe, registry)
    tok = AutoTokenizer.from_pretrained(str(folder))
    init = recipe.init
    torch.manual_seed(seed)
    if isinstance(init, ConfigInit):
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=init.hidden_size, num_hidden_layers=init.num_layers,
                         num_attention_heads=init.num_heads, intermediate_size=init.intermediate_size)
        return BertModel(cfg), tok
    cfg = AutoConfig.from_pretrained(str(folder))
    if cfg.model_type != "bert":
        raise UserInputError(f"student init {folder} is a {cfg.model_type} model; students are BERT encoders", "pick a BERT-family init")
    if isinstance(init, TruncateInit):
        if init.layers > cfg.num_hidden_layers:
            raise UserInputError(f"init.layers={init.layers} but {init.model} has {cfg.num_hidden_layers} layers", f"use at most {cfg.num_hidden_layers}")
        full = load_encoder(folder)
        cfg.num_hidden_layers = init.layers
        model = BertModel(cfg)
        missing, unexpected = model.load_state_dict(full.state_dict(), strict=False)
        # layers >= k are the only unexpected keys; nothing may be missing (the pooler may be absent in the source)
        assert not [k for k in missing if not k.startswith("pooler.")], missing
        del full
        return model, tok
    return load_encoder(folder), tok


def load_encoder(folder: Path):
    """The ``BertModel`` of ``folder`` as a student's encoder: a missing pooler is initialised fresh and a task head
    (classifier, pre-training heads) is dropped, quietly; any other disagreement with config.json is an error."""
    from transformers import BertModel

    from qadistill.integrity import ENCODER_FOR_STUDENT, load_pretrained

    return load_pretrained(BertModel, folder, **ENCODER_FOR_STUDENT)


def make_student_class():
    import torch
    from torch import nn

    class _MultiHeadStudent(nn.Module):
        """Shared encoder → pooled [CLS] → dropout → K linear heads. ``forward`` returns logits of shape [B, K]."""

        def __init__(self, encoder, n_heads: int, learned_weights: bool = False, dropout: float = 0.1) -> None:
            super().__init__()
            self.encoder = encoder
            h = encoder.config.hidden_size
            self.dropout = nn.Dropout(dropout)
            self.heads = nn.Linear(h, n_heads)
            nn.init.normal_(self.heads.weight, std=encoder.config.initializer_range)
            nn.init.zeros_(self.heads.bias)
            self.head_logits = nn.Parameter(torch.zeros(n_heads)) if learned_weights else None

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return self.heads(self.dropout(out.pooler_output))

        def head_weights(self):
            k = self.heads.out_features
            if self.head_logits is None:
                return torch.full((k,), 1.0 / k)
            return torch.softmax(self.head_logits.detach(), dim=0)

        def score(self, logits):
            """[B, K] head logits → [B] inference score (weighted mean of the heads)."""
            return logits @ self.head_weights().to(logits.dtype)

        def to_sequence_classifier(self):
            """An equivalent ``BertForSequenceClassification`` (one logit): heads folded into one linear layer."""
            from transformers import BertForSequenceClassification

            cfg = self.encoder.config.__class__(**self.encoder.config.to_dict())
            cfg.num_labels = 1
            cfg.architectures = ["BertForSequenceClassification"]
            cls = BertForSequenceClassification(cfg)
            cls.bert.load_state_dict(self.encoder.state_dict())
            w = self.head_weights()
            with torch.no_grad():
                cls.classifier.weight.copy_((w[:, None] * self.heads.weight).sum(0, keepdim=True))
                cls.classifier.bias.copy_((w * self.heads.bias).sum().reshape(1))
            return cls

    return _MultiHeadStudent


# What a saved model's score is: its raw logit (the heads' weighted mean, no sigmoid), which qadistill ranks by and its
# parity checks compare. sentence-transformers' CrossEncoder reads ``config.sentence_transformers["activation_fn"]``
# (a ``torch.`` path is trusted without remote code) and would otherwise put a sigmoid on a one-label model.
SCORE_CONFIG = {"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}


def save_student(student, tokenizer, folder: Path, extra_config: dict | None = None) -> None:
    cls = student.to_sequence_classifier()
    cls.config.update({**SCORE_CONFIG, **(extra_config or {})})
    with QuietTransformers():
        cls.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    write_checksums(folder)


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())

