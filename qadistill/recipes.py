"""Typed, validated recipes loaded from TOML.

Three kinds, told apart by the top-level ``kind`` field:

* ``teacher``  — a model that scores query–passage pairs (a cross-encoder, or a bi-encoder whose cosine similarity is
  calibrated into a logit);
* ``student``  — the light model to distil into: how it is initialised and how its per-teacher heads are combined;
* ``pipeline`` — teachers + student + data + distillation settings + export targets.

Every model is ``extra="forbid"``: a misspelt field is an error naming the file and the field, never silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from qadistill.errors import RecipeError
from qadistill.losses import HEAD_COMBINES, HEAD_KINDS, LOSSES, MODES, PRECISIONS
from qadistill.variants import Variant

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Hub repo ids: "name" or "namespace/name"; letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 chars.
REPO_ID_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")

class _Strict(BaseModel):
    # strict types: a TOML string is not a number and "yes" is not a boolean (lax mode turned max_length = "64" into 64)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def validate_repo_id(repo_id: str) -> str:
    if not REPO_ID_RE.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith((".", "-")):
        raise ValueError(
            f"'{repo_id}' is not a valid Hugging Face repo id (expected 'namespace/name' with letters, digits, '-', '_', '.')"
        )
    return repo_id


def validate_revision(revision: str) -> str:
    if not REVISION_RE.match(revision) or ".." in revision:
        raise ValueError(f"'{revision}' is not a valid revision (a branch, tag or commit hash)")
    return revision


# ---------------------------------------------------------------------------------------------------------------------
# Model sources
# ---------------------------------------------------------------------------------------------------------------------
class HubSource(_Strict):
    """A model on the Hugging Face Hub, pinned to a revision (branch, tag or commit). Needs the Hub or the HF cache."""

    type: Literal["hub"]
    repo_id: str
    revision: str = "main"

    _repo = field_validator("repo_id")(lambda cls, v: validate_repo_id(v))
    _rev = field_validator("revision")(lambda cls, v: validate_revision(v))

    def describe(self) -> str:
        return f"hub:{self.repo_id}@{self.revision}"


class LocalSource(_Strict):
    """A folder on disk in Hugging Face layout (config.json + weights + tokenizer files)."""

    type: Literal["local"]
    path: str = Field(min_length=1)

    def describe(self) -> str:
        return f"local:{self.path}"


class PackageSource(_Strict):
    """A model shipped inside an installed Python package (see ``qadistill.sources.PACKAGES``)."""

    type: Literal["package"]
    name: Literal["all-minilm-l6-v2", "all-mpnet-base-v2", "paraphrase-minilm-l3-v2"]

    def describe(self) -> str:
        return f"package:{self.name}"


ModelSource = Annotated[Union[HubSource, LocalSource, PackageSource], Field(discriminator="type")]


# ---------------------------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------------------------
class _RecipeBase(_Strict):
    name: str
    description: str = ""
    parameters: int | None = Field(
        default=None, gt=0, description="Parameter count of the architecture (from its config), shown in `zoo list`."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"'{v}' is not a valid name (lower-case letters, digits, '.', '_', '-'; starts with a letter or digit; at most 64)"
            )
        return v


class Calibration(_Strict):
    """How a bi-encoder's cosine similarity becomes a logit: ``logistic`` fits a*cos+b on the train split's labels."""

    method: Literal["none", "logistic"] = "logistic"
    split: str = "train"


class TrainSettings(_Strict):
    """The training loop's knobs a recipe may set: a subset of ``train.TrainConfig`` by name and meaning (validated
    here; ``train.train_config`` maps them). ``[distill]`` and ``[finetune]`` extend it with their own fields and
    defaults; nothing is copied between them."""

    epochs: int = Field(default=1, ge=1, le=100)
    batch_size: int = Field(default=32, ge=1, le=4096)
    learning_rate: float = Field(default=1e-4, gt=0, lt=1)
    seed: int = Field(default=42, ge=0)
    alpha: float = Field(default=0.5, ge=0, le=1, description="Weight of the gold-label loss; 1-alpha goes to the teachers.")
    eval_every: int = Field(default=0, ge=0, description="Dev evaluation every N steps (0: at epoch ends).")
    patience: int = Field(default=2, ge=1, description="Dev evaluations without improvement before stopping.")
    precision: Literal[PRECISIONS] = Field(  # type: ignore[valid-type]
        default="fp32", description="Training arithmetic: bf16 autocast (weights stay fp32), or auto: bf16 where the device has it natively.")
    ema_decay: float = Field(default=0.0, ge=0, lt=1, description=(
        "0: keep the trained weights. Above 0: an exponential moving average of the weights with this decay per step "
        "is what dev evaluates, selects and the run keeps (in each stage of a two-stage run)."))


class FinetuneSettings(TrainSettings):
    """How `qadistill teach` fine-tunes (and fine-tuned) a cross-encoder teacher: the defaults `teach` uses for this
    recipe, and, in a built teacher's own recipe.toml, what it was made with. Command-line options override them."""

    epochs: int = Field(default=2, ge=1, le=100)
    learning_rate: float = Field(default=3e-5, gt=0, lt=1)
    batch_size: int = Field(default=16, ge=1, le=4096)
    alpha: float = Field(default=0.5, ge=0, le=1, description="With distill_from: weight of the gold label.")
    data: str = Field(default="wikiqa", min_length=1)
    train_filter: Literal["with-positive", "all"] = "with-positive"
    limit_train_queries: int | None = Field(default=None, ge=1)
    distill_from: list[str] = Field(default_factory=list, description="Teachers whose mean logit is a soft target.")
    folds: int = Field(default=0, ge=0, le=20, description=(
        "Cross-fitting: also train this many fold models, each without one fold of the training queries, so the teacher "
        "scores its own training queries out of fold (qadistill.crossfit); 0: the full model only."))

    @field_validator("folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("1 fold is no cross-fitting: use 0 (the full model only) or at least 2")
        return v


class TeacherRecipe(_RecipeBase):
    @model_validator(mode="before")
    @classmethod
    def _default_calibration(cls, data):
        if isinstance(data, dict) and data.get("architecture") == "bi-encoder" and data.get("calibration") is None:
            data = {**data, "calibration": {}}
        return data

    kind: Literal["teacher"]
    architecture: Literal["cross-encoder", "bi-encoder"]
    source: ModelSource | None = Field(default=None, description="Where the weights are; omitted for a teacher built by `qadistill teach`.")
    max_length: int = Field(default=128, ge=8, le=4096)
    pooling: Literal["mean", "cls"] = "mean"
    calibration: Calibration | None = Field(default=None, description="Bi-encoders only; defaults to a logistic fit.")
    finetune: FinetuneSettings | None = Field(default=None, description="With finetune_from: how `teach` fine-tunes it.")
    finetune_from: str | None = Field(
        default=None,
        description="For a cross-encoder teacher built by `qadistill teach`: the name of the encoder it starts from.",
    )

    @model_validator(mode="after")
    def _check(self) -> "TeacherRecipe":
        if self.source is None and self.finetune_from is None:
            raise ValueError("set 'source' (where the weights are) or 'finetune_from' (a teacher `qadistill teach` fine-tunes)")
        if self.source is not None and self.finetune_from is not None:
            raise ValueError("set either 'source' or 'finetune_from', not both")
        if self.finetune is not None and self.finetune_from is None:
            raise ValueError("'finetune' settings need 'finetune_from' (the encoder `qadistill teach` starts from)")
        if self.finetune_from is not None and self.architecture != "cross-encoder":
            raise ValueError("'finetune_from' builds a cross-encoder: set architecture = \"cross-encoder\"")
        if self.architecture == "cross-encoder" and self.calibration is not None and self.calibration.method != "none":
            raise ValueError("calibration applies to bi-encoders only (a cross-encoder already outputs a logit)")
        return self


class PretrainedInit(_Strict):
    """Start from a pretrained encoder as it is (e.g. paraphrase-MiniLM-L3)."""

    type: Literal["pretrained"]
    source: ModelSource


class TruncateInit(_Strict):
    """Start from the first ``layers`` layers of another model in the zoo (e.g. MiniLM-L6 → 3 layers)."""

    type: Literal["truncate"]
    model: str
    layers: int = Field(ge=1, le=48)


class ConfigInit(_Strict):
    """Random initialisation from a BERT config: for tests and ablations only, never for accuracy claims."""

    type: Literal["config"]
    hidden_size: int = Field(default=384, ge=8, le=4096)
    num_layers: int = Field(default=3, ge=1, le=48)
    num_heads: int = Field(default=12, ge=1, le=64)
    intermediate_size: int = Field(default=1536, ge=8, le=16384)
    vocab_from: str = Field(default="all-minilm-l6-v2", description="Zoo model whose tokenizer the student uses.")

    @model_validator(mode="after")
    def _heads_divide(self) -> "ConfigInit":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")
        return self


class PruneInit(_Strict):
    """Start from a built student (a zoo artifact name or a model folder), reshaped for speed; the distillation run
    that uses this student is the recovery pass. Any of:

    - ``intermediate_size``: feed-forward layers pruned to this many units each, FastFormers-style: the units with the
      lowest first-order importance (|activation x gradient| of the gold loss, summed over the first
      ``importance_queries`` train questions) go.
    - ``attention_heads``: adjacent heads merged into this many wider heads (12 heads of 32 -> 6 of 64: the same Q/K/V
      weights and the same operations, half the softmax rows and twice the depth of every attention product, which
      ONNX Runtime's CPU attention runs faster; ``benchmarks/head_shapes.py``). Heads are merged, not pruned: a
      pruned-head model is not a plain ``BertConfig`` (transformers 5 has no ``pruned_heads``), and the saved student
      must load anywhere.
    - ``activation``: ``gelu_new`` (the tanh approximation, ONNX Runtime's FastGelu kernel) instead of the exact erf
      ``gelu``, so the export runs the function the student was trained with; or ``relu``, cheaper still (MobileBERT,
      arXiv 2004.02984, swaps GELU for ReLU for latency), which the recovery pass has to adapt to."""

    type: Literal["prune"]
    model: str = Field(min_length=1, description="A built student (zoo artifact name) or a folder with its config.json.")
    intermediate_size: int | None = Field(default=None, ge=8, le=16384, description="Feed-forward units kept in every layer (default: all).")
    importance_queries: int = Field(default=300, ge=1, description="Train questions used to rank the units (train split only).")
    attention_heads: int | None = Field(default=None, ge=1, le=64, description="Merge adjacent heads into this many (default: keep them).")
    activation: Literal["gelu", "gelu_new", "relu"] | None = Field(default=None, description="Feed-forward activation (default: the source's).")

    @model_validator(mode="after")
    def _changes_something(self) -> "PruneInit":
        if self.intermediate_size is None and self.attention_heads is None and self.activation is None:
            raise ValueError("a prune init needs intermediate_size, attention_heads or activation")
        return self


class ContinueInit(_Strict):
    """Start from a built student as it is: its encoder, and every head from its served score. The distillation run
    that uses this student is a further pass: another labelled pass over the same data (a warm restart of the learning
    rate), or new data (a built student adapted to a user's domain)."""

    type: Literal["continue"]
    model: str = Field(min_length=1, description="A built student (zoo artifact name) or a folder with its config.json.")


StudentInit = Annotated[Union[PretrainedInit, TruncateInit, ConfigInit, PruneInit, ContinueInit], Field(discriminator="type")]


HeadKind = Literal[HEAD_KINDS]  # type: ignore[valid-type]  (distill --heads)
HeadCombine = Literal[HEAD_COMBINES]  # type: ignore[valid-type]  (distill --head-combine)


class StudentRecipe(_RecipeBase):
    kind: Literal["student"]
    init: StudentInit
    max_length: int = Field(default=128, ge=8, le=4096)
    head_combine: HeadCombine = Field(
        default="mean", description="How the per-teacher heads give the inference score (both fold exactly); a pipeline's [distill] head_combine overrides it."
    )


class DataSettings(_Strict):
    name: str = Field(default="wikiqa", min_length=1, description="A named dataset (wikiqa, trecqa) or a file path.")
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    limit_train_queries: int | None = Field(default=None, ge=1, description="Use only the first N train queries.")
    dev: str | None = Field(default=None, min_length=1, description="A dev file (with `test`) when `name` is a file.")
    test: str | None = Field(default=None, min_length=1, description="A test file (with `dev`) when `name` is a file.")
    split_seed: int = Field(default=0, ge=0, description="Seed of the by-query split of a single file.")
    split_fractions: tuple[float, float, float] = Field(default=(0.8, 0.1, 0.1), strict=False, description="train/dev/test share of the queries.")
    unlabelled: str | None = Field(default=None, min_length=1, description=(
        "A file of unlabelled query-passage pairs (JSONL/TSV/CSV/Parquet; labels ignored; consecutive rows with one "
        "query are its candidates) for TMKD stage 1, streamed; replaces the pool built from the train texts."))

    @model_validator(mode="after")
    def _fractions(self) -> "DataSettings":
        f = self.split_fractions
        if any(x <= 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions {list(f)} must be three positive numbers that sum to 1")
        if (self.dev is None) != (self.test is None):
            raise ValueError("set both 'dev' and 'test' files, or neither (a single file is then split by query)")
        if self.name == "wikiqa":  # a typo ("tesst") is refused here, not at the run's first load
            from qadistill.data import WIKIQA_SPLITS

            bad = next(((k, v) for k in ("train_split", "dev_split", "test_split") if (v := getattr(self, k)) not in WIKIQA_SPLITS), None)
            if bad is not None:
                raise ValueError(f"{bad[0]} {bad[1]!r}: wikiqa's splits are train, dev and test")
        return self


DistillMode = Literal[MODES]  # type: ignore[valid-type]
DistillLoss = Literal[LOSSES]  # type: ignore[valid-type]


class DistillSettings(TrainSettings):
    # avg by default: at equal budget mkdm's per-teacher heads did not beat one head on the teachers' mean beyond the
    # seed spread (benchmarks/results/mkdm_ablation.md); --mode mkdm / mode = "mkdm" for one head per teacher
    mode: DistillMode = "avg"
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    max_length: int = Field(default=128, ge=8, le=4096)
    temperature: float = Field(default=2.0, gt=0, le=100)
    pretrain_unlabelled: bool = Field(default=False, description="TMKD stage 1 before the MKDM stage (on by itself with [data] unlabelled).")
    unlabelled_passes: int = Field(default=1, ge=1, le=100, description="Stage 1: passes over its pool (the built-in one or the [data] unlabelled file).")
    pool_hard_negatives: int = Field(default=5, ge=0, le=100, description="Built-in stage-1 pool: per train question, its most similar sentences from other documents (by the first bi-encoder teacher).")
    pool_pseudo_queries: int = Field(default=0, ge=0, le=100, description="Built-in stage-1 pool: per document, this many sentences as queries against its other sentences.")
    unlabelled_teachers: list[str] | None = Field(default=None, description=(
        "Stage 1: the teachers that label its pool (a subset of the pipeline's teachers; default: all of them). A "
        "teacher fine-tuned on the labelled questions is out of its domain on the pool's other-document sentences and "
        "pseudo-queries; with mode mkdm, the head of a teacher left out here learns the mean of those named in stage 1."))
    rehearse: float = Field(default=0.0, ge=0, le=10, description=(
        "The labelled stage: this many teacher-only batches from the unlabelled pool (the built-in one, or [data] "
        "unlabelled) per labelled batch, shuffled in among them, so the student keeps rehearsing what the teachers "
        "say about the pool while it fits the gold labels; 0: off. Works with or without stage 1."))
    stage1_mix: float | Literal["dev"] = Field(default=0.0, description=(
        "TMKD stage 1 kept in the served weights (WiSE-FT, arXiv 2109.01903): after the labelled stage the student's "
        "weights become (1 - w) x its own + w x stage 1's last, w this share (0: off, the labelled stage's weights "
        "as trained; 0.3: 30% stage 1), or \"dev\": the share of 0, 0.1, ... 1 with the best MAP on the dev split "
        "(ties: the smaller). Needs stage 1. The dev MAP of every share is recorded either way."))
    loss: DistillLoss = Field(default="pointwise", description="Teacher objective: pointwise soft BCE, listwise KL over a query's candidates, or Margin-MSE.")
    list_size: int = Field(default=16, ge=2, le=1024, description="Ranking losses: a query's candidates are cut into lists of at most this many.")
    freeze_embeddings: bool = Field(default=False, description="Keep the student's word embeddings as initialised (faster steps).")
    heads: HeadKind = Field(default="linear", description=(
        "Per-teacher heads: linear (one linear head per teacher on the shared pooler) or mlp (each teacher's head has a "
        "hidden layer of its own, hidden/K wide, on the [CLS] state; folds exactly into the pooler, so no inference cost)."))
    head_combine: HeadCombine | None = Field(default=None, description=(
        "How the heads give the served score: mean, or learned (convex weights fitted on the dev split after training, "
        "kept only where they beat the mean on dev). Default: the student recipe's head_combine."))

    @field_validator("stage1_mix")
    @classmethod
    def _share(cls, v: float | str) -> float | str:
        if v != "dev" and not 0 <= v <= 1:
            raise ValueError(f"stage1_mix {v} is a share of stage 1's weights: a number from 0 to 1, or \"dev\"")
        return v


# a recipe's [export] targets: the Variant vocabulary, with its recipe spelling (onnx-optimized for optimized)
ExportTarget = Literal[tuple(v.recipe_target for v in Variant)]  # type: ignore[valid-type]


class ExportSettings(_Strict):
    targets: list[ExportTarget] = Field(default_factory=lambda: ["onnx", "int8-dynamic"])

    @field_validator("targets")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("export targets must not repeat")
        return v


class PipelineRecipe(_RecipeBase):
    kind: Literal["pipeline"]
    teachers: list[str] = Field(default_factory=list)
    student: str
    data: DataSettings = DataSettings()
    distill: DistillSettings = DistillSettings()
    export: ExportSettings = ExportSettings()

    @model_validator(mode="after")
    def _teachers_fit_mode(self) -> "PipelineRecipe":
        n = len(self.teachers)
        if len(set(self.teachers)) != n:
            raise ValueError("teachers must not repeat")
        mode = self.distill.mode
        if mode == "gold" and n:
            raise ValueError("mode 'gold' trains on labels only: leave 'teachers' empty or pick another mode")
        if mode == "single" and n != 1:
            raise ValueError(f"mode 'single' needs exactly one teacher, got {n}")
        if mode in ("avg", "mkdm") and n < 1:
            raise ValueError(f"mode '{mode}' needs at least one teacher")
        chosen = self.distill.unlabelled_teachers
        if chosen is not None:
            if not chosen:
                raise ValueError("unlabelled_teachers is empty: name at least one teacher, or leave it out (all of them)")
            if len(set(chosen)) != len(chosen):
                raise ValueError("unlabelled_teachers must not repeat")
            stray = [t for t in chosen if t not in self.teachers]
            if stray:
                raise ValueError(f"unlabelled_teachers names {', '.join(stray)}, not among the pipeline's teachers "
                                 f"({', '.join(self.teachers) or 'none'}): stage 1 labels its pool with some of them")
            if not (self.distill.pretrain_unlabelled or self.data.unlabelled or self.distill.rehearse):
                raise ValueError("unlabelled_teachers chooses who labels the unlabelled pool, and this pipeline uses none: "
                                 "add pretrain_unlabelled = true (distill --pretrain-unlabelled), [data] unlabelled or rehearse")
        self._stage1_options_apply()
        if self.distill.head_combine == "learned" and mode != "mkdm":
            raise ValueError(f"head_combine 'learned' weighs one head per teacher, which mode '{mode}' does not have: "
                             "set mode = 'mkdm' (distill --mode mkdm) or head_combine = 'mean'")
        return self

    def _stage1_options_apply(self) -> None:
        """A stage-1 setting that would change nothing is refused, not recorded in the artifact as if it had applied."""
        d, pool_file = self.distill, self.data.unlabelled
        if d.rehearse and d.mode == "gold":
            raise ValueError("rehearse mixes in batches the teachers label, and mode 'gold' has no teachers: "
                             "pick mode avg or mkdm with teachers, or leave rehearse at 0")
        if d.unlabelled_passes != 1 and not (d.pretrain_unlabelled or pool_file):
            raise ValueError("unlabelled_passes sets TMKD stage 1's passes, and this pipeline has no stage 1: add "
                             "pretrain_unlabelled = true (distill --pretrain-unlabelled) or [data] unlabelled, or leave it at 1")
        if d.stage1_mix != 0 and not (d.pretrain_unlabelled or pool_file):
            raise ValueError(f"stage1_mix {d.stage1_mix!r} mixes TMKD stage 1's weights into the served student, and this "
                             "pipeline has no stage 1: add pretrain_unlabelled = true (distill --pretrain-unlabelled) or "
                             "[data] unlabelled, or leave it at 0")
        for f in ("pool_hard_negatives", "pool_pseudo_queries"):
            default = DistillSettings.model_fields[f].default
            if getattr(d, f) == default:
                continue
            if pool_file:
                raise ValueError(f"{f} shapes the built-in stage-1 pool, which [data] unlabelled ({pool_file}) replaces: "
                                 f"leave it at {default} with a pool file of your own")
            if not (d.pretrain_unlabelled or d.rehearse):
                raise ValueError(f"{f} shapes the built-in unlabelled pool, and this pipeline uses none: add "
                                 f"pretrain_unlabelled = true (distill --pretrain-unlabelled) or rehearse, or leave it at {default}")


class PublishedFigures(_Strict):
    """Figures published by the model's authors (not measured by qadistill), with where they come from."""

    source: str = Field(min_length=1)
    metrics: dict[str, float] = Field(default_factory=dict)


class PrebuiltRecipe(_RecipeBase):
    """A student that already exists on the Hub (e.g. the distilled MS MARCO cross-encoders): `qadistill zoo pull`."""

    kind: Literal["prebuilt"]
    architecture: Literal["cross-encoder"] = "cross-encoder"
    source: HubSource
    max_length: int = Field(default=512, ge=8, le=4096)
    published: PublishedFigures | None = None


Recipe = Annotated[Union[TeacherRecipe, StudentRecipe, PipelineRecipe, PrebuiltRecipe], Field(discriminator="kind")]
RECIPE_KINDS = ("teacher", "student", "pipeline", "prebuilt")


def _tags(union) -> set[str]:
    """The ``type`` tags of a tagged union of recipe models (``Annotated[Union[...], Field(discriminator="type")]``)."""
    members = get_args(get_args(union)[0])
    return {t for m in members for t in get_args(m.model_fields["type"].annotation)}


def _loc(loc: tuple) -> str:
    """pydantic puts the tag of a tagged union into the location: drop those tags, keep real field names."""
    tags = _tags(ModelSource) | _tags(StudentInit)
    parts: list[str] = []
    for i, p in enumerate(loc):
        p = str(p)
        if i == 0 and p in RECIPE_KINDS:
            continue
        if parts and parts[-1] in ("source", "init") and p in tags:
            continue
        parts.append(p)
    return ".".join(parts)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_problem(exc: ValidationError) -> tuple[str | None, str]:
    """The first problem of a recipe model's ValidationError as (dotted field or None, one-line message)."""
    err = exc.errors()[0]
    field = _loc(err["loc"]) or None
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see the built-in recipes in zoo/ for the allowed fields)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
        msg = f"{_short(err['input'])} is not allowed; expected {err['ctx']['expected']}"
    elif err["type"] == "union_tag_invalid":
        field = f"{field}.type" if field else "type"
        msg = f"{_short(err['ctx'].get('tag'))} is not allowed; expected {err['ctx'].get('expected_tags')}"
    elif err["type"] == "union_tag_not_found":
        field = f"{field}.type" if field else "type"
        msg = "required field is missing"
    elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"expected a table ({field or 'x'} = {{ ... }} or a [{field or 'x'}] section), got {_short(err.get('input'))}"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg = f"{msg} (got {_short(err['input'])})"
    return field, msg


def parse_recipe(data: dict, path: object = "<recipe>") -> "TeacherRecipe | StudentRecipe | PipelineRecipe | PrebuiltRecipe":
    """Validate a recipe dict; raise RecipeError naming the first problem's field."""
    if not isinstance(data, dict):
        raise RecipeError(path, None, "a recipe must be a TOML table")
    kind = data.get("kind")
    if kind is None:
        raise RecipeError(path, "kind", f"missing; set kind = one of {', '.join(RECIPE_KINDS)}")
    if kind not in RECIPE_KINDS:
        raise RecipeError(path, "kind", f"{_short(kind)} is not a recipe kind; allowed: {', '.join(RECIPE_KINDS)}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        field, msg = validation_problem(exc)
        where = str(path)
        hint = ("fix that option and try again (`qadistill distill --help` lists them)" if where.startswith("command line") else
                "fix that option, or the recipe (`qadistill zoo show NAME` prints it)" if where.endswith("+ options") else
                "fix the recipe and try again; `qadistill zoo show NAME` prints a valid one")
        raise RecipeError(path, field, msg, hint=hint) from None


def load_recipe(path: Path) -> TeacherRecipe | StudentRecipe | PipelineRecipe:
    """Read and validate a recipe TOML file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(path, None, "file not found") from None
    except IsADirectoryError:
        raise RecipeError(path, None, "is a folder, not a recipe file") from None
    except OSError as exc:
        raise RecipeError(path, None, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")  # an editor's byte-order mark is not an error
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RecipeError(path, None, f"not UTF-8 text at line {line} (a recipe is a TOML file)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(path, None, _toml_problem(exc, text)) from None
    except RecursionError:
        raise RecipeError(path, None, "invalid TOML: arrays or tables nested too deeply") from None
    return parse_recipe(data, path)


def _toml_problem(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """tomllib's "Invalid value (at line 3, column 16)" as "invalid TOML at line 3, column 16: invalid value"."""
    m = re.fullmatch(r"(.*) \((at line \d+, column \d+|at end of document)\)", str(exc), re.S)
    if m is None:
        return f"invalid TOML: {exc}"
    what, where = m.group(1), m.group(2)
    if where == "at end of document":
        where = f"at line {text.count(chr(10)) + 1} (the end of the file)"
    return f"invalid TOML {where}: {what[:1].lower()}{what[1:]}"


def recipe_to_dict(recipe: BaseModel) -> dict:
    return recipe.model_dump(mode="json", exclude_none=True)


def recipe_to_toml(recipe: BaseModel) -> str:
    import tomli_w

    return tomli_w.dumps(recipe_to_dict(recipe))


def _make_adapter():
    from pydantic import TypeAdapter

    return TypeAdapter(Recipe)


_ADAPTER = _make_adapter()
