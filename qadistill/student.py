"""Students: a shared encoder with one output head per teacher (MKDM), built from a student recipe.

Initialisations: ``pretrained`` (a small encoder as it is, e.g. paraphrase-MiniLM-L3), ``truncate`` (the embeddings and
first k layers of a teacher such as MiniLM-L6) or ``config`` (random, for tests only).

The saved student is a plain Hugging Face ``BertForSequenceClassification`` with one logit: a convex combination of K
linear heads is itself a linear head, and K private hidden layers of hidden/K units (``heads="mlp"``) stack into the
pooler, so folding is exact and the folder loads without qadistill (transformers, Optimum's ORTModel,
sentence-transformers' CrossEncoder).
"""

from __future__ import annotations

from pathlib import Path

from qadistill.errors import UserInputError
from qadistill.integrity import QuietTransformers, write_checksums
from qadistill.fsutil import plain_modes
from qadistill.recipes import ConfigInit, ContinueInit, PretrainedInit, PruneInit, StudentRecipe, TeacherRecipe, TruncateInit
from qadistill.sources import resolve_source


def encoder_folder_for(recipe: StudentRecipe, registry) -> Path:
    init = recipe.init
    if isinstance(init, PretrainedInit):
        return resolve_source(init.source)
    if isinstance(init, (PruneInit, ContinueInit)):
        from qadistill.prune import source_folder

        return source_folder(init.model, registry)
    ref = init.model if isinstance(init, TruncateInit) else init.vocab_from
    t = registry.recipe(ref, "teacher")
    assert isinstance(t, TeacherRecipe)
    if t.source is None and t.finetune_from is not None:
        # a teacher `qadistill teach` fine-tunes: its build (a cross-encoder, whose classifier the student drops)
        return registry.built_teacher(ref)
    if t.source is None:
        raise UserInputError(f"student init '{ref}' has no source of its own", "initialise from a packaged or Hub encoder")
    return resolve_source(t.source)


def check_init(recipe: StudentRecipe, registry) -> None:
    """What ``build_encoder`` would refuse about the student's init, from its config alone (seconds, before any teacher
    scores): a source that is not a BERT encoder, or more layers to keep than it has."""
    from transformers import AutoConfig

    if isinstance(recipe.init, (TruncateInit, PretrainedInit)):  # the inits build_encoder loads from a source
        folder = encoder_folder_for(recipe, registry)
        _check_source(recipe.init, AutoConfig.from_pretrained(str(folder)), folder)


def _check_source(init, cfg, folder: Path) -> None:
    """A student's source must be a BERT encoder with at least the layers a truncation keeps."""
    if cfg.model_type != "bert":
        raise UserInputError(f"student init {folder} is a {cfg.model_type} model; students are BERT encoders", "pick a BERT-family init")
    if isinstance(init, TruncateInit) and init.layers > cfg.num_hidden_layers:
        raise UserInputError(f"init.layers={init.layers} but {init.model} has {cfg.num_hidden_layers} layers", f"use at most {cfg.num_hidden_layers}")


def build_encoder(recipe: StudentRecipe, registry, seed: int = 0):
    """(BertModel with a pooler, tokenizer) for the student's initialisation (not ``prune``, which needs train data:
    ``qadistill.prune.pruned_encoder``, nor ``continue``: ``qadistill.prune.continued_encoder``)."""
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
    _check_source(init, cfg, folder)
    if isinstance(init, TruncateInit):
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
        """Shared encoder → K heads, one per teacher; ``forward`` gives [B, K] logits. ``heads``: linear (on the pooler)
        or mlp (a hidden layer of hidden // K units per head on [CLS], from its slice of the pooler); both fold exactly
        into ``BertForSequenceClassification``. The served score is a convex combination of the heads: the mean unless
        ``set_head_weights`` was given others (``qadistill.heads.fit_head_weights`` fits them on dev)."""

        def __init__(self, encoder, n_heads: int, dropout: float = 0.1, heads: str = "linear") -> None:
            super().__init__()
            if heads not in ("linear", "mlp"):
                raise ValueError(f"heads must be linear or mlp, not {heads!r}")
            self.encoder = encoder
            self.kind = heads
            k = n_heads
            self.dropout = nn.Dropout(dropout)
            _add_heads(self, encoder, k, heads)
            self.n_heads = k
            # the served combination; not in checkpoints (it is fitted after training, never trained)
            self.register_buffer("combine", torch.full((k,), 1.0 / k), persistent=False)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            if self.kind == "linear":
                return self.heads(self.dropout(out.pooler_output))
            x = torch.tanh(self.hidden(out.last_hidden_state[:, 0]))  # [B, K*m]
            x = self.dropout(x).view(x.shape[0], self.n_heads, -1)  # [B, K, m]
            return (x * self.out_weight).sum(-1) + self.out_bias

        def head_weights(self):
            return self.combine.detach().cpu()

        def set_head_weights(self, weights) -> None:
            """Serve a convex combination of the heads (``weights`` [K], non-negative, summing to 1)."""
            w = torch.as_tensor(weights, dtype=torch.float32)
            if w.shape != (self.n_heads,) or bool((w < 0).any()) or abs(float(w.sum()) - 1) > 1e-5:
                raise ValueError(f"head weights must be {self.n_heads} non-negative numbers summing to 1, not {w.tolist()}")
            self.combine.copy_(w.to(self.combine.device))

        def score(self, logits):
            """[B, K] head logits → [B] inference score (weighted mean of the heads)."""
            return logits @ self.combine.to(logits.dtype)

        def to_sequence_classifier(self):
            """An equivalent ``BertForSequenceClassification`` (one logit): heads folded into the pooler and classifier."""
            from transformers import BertForSequenceClassification

            cfg = self.encoder.config.__class__(**self.encoder.config.to_dict())
            cfg.num_labels = 1
            cfg.architectures = ["BertForSequenceClassification"]
            cls = BertForSequenceClassification(cfg)
            missing, _ = cls.bert.load_state_dict(self.encoder.state_dict(), strict=False)
            assert not [k for k in missing if not k.startswith("pooler.")], missing
            _fold_heads(self, cls)
            return cls

    return _MultiHeadStudent


def heads_from_classifier(module, classifier) -> None:
    """Start every linear head of ``module`` as ``classifier`` (a one-logit ``nn.Linear`` on the pooler, e.g. the
    pruned source student's), so the student begins at its source's score; mlp heads keep their own start."""
    import torch

    if module.kind != "linear":
        return
    with torch.no_grad():
        module.heads.weight.copy_(classifier.weight.detach().expand_as(module.heads.weight))
        module.heads.bias.fill_(float(classifier.bias.detach().reshape(-1)[0]))


def _add_heads(module, encoder, k: int, heads: str) -> None:
    """The K heads of ``module`` (see ``_MultiHeadStudent``): linear on the pooler, or mlp (private hidden layers)."""
    import torch
    from torch import nn

    h, std = encoder.config.hidden_size, encoder.config.initializer_range
    if heads == "linear":
        module.heads = nn.Linear(h, k)
        nn.init.normal_(module.heads.weight, std=std)
        nn.init.zeros_(module.heads.bias)
        return
    m = h // k
    if m < 1:
        raise ValueError(f"mlp heads need hidden_size ({h}) >= number of heads ({k})")
    module.hidden = nn.Linear(h, k * m)
    pooler = getattr(encoder, "pooler", None)
    with torch.no_grad():
        if pooler is not None:  # each teacher's layer starts as its slice of the pretrained pooler
            module.hidden.weight.copy_(pooler.dense.weight[: k * m])
            module.hidden.bias.copy_(pooler.dense.bias[: k * m])
    module.out_weight = nn.Parameter(torch.randn(k, m) * std)
    module.out_bias = nn.Parameter(torch.zeros(k))


def _fold_heads(module, cls) -> None:
    """Write ``module``'s heads, combined with its head weights, into ``cls`` (a one-label BertForSequenceClassification
    whose encoder is already loaded): the classifier, and for mlp heads the pooler too."""
    import torch

    w = module.head_weights()
    with torch.no_grad():
        if module.kind == "linear":
            cls.classifier.weight.copy_((w[:, None] * module.heads.weight.detach().cpu()).sum(0, keepdim=True))
            cls.classifier.bias.copy_((w * module.heads.bias.detach().cpu()).sum().reshape(1))
            return
        # the K hidden layers become the pooler's first K*m rows; spare rows are 0 (tanh(0) = 0, weight 0)
        km, dense = module.hidden.out_features, cls.bert.pooler.dense
        dense.weight.zero_()
        dense.bias.zero_()
        dense.weight[:km].copy_(module.hidden.weight.detach().cpu())
        dense.bias[:km].copy_(module.hidden.bias.detach().cpu())
        row = torch.zeros(1, dense.weight.shape[0])
        row[0, :km] = (w[:, None] * module.out_weight.detach().cpu()).reshape(-1)
        cls.classifier.weight.copy_(row)
        cls.classifier.bias.copy_((w * module.out_bias.detach().cpu()).sum().reshape(1))


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
    plain_modes(folder)
    write_checksums(folder)


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())

