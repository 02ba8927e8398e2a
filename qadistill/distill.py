"""`qadistill distill`: score the data with every teacher (cached), train the student MKDM-style, evaluate, and save a
Hub-style model folder (config, tokenizer, safetensors, model card, metrics.json, recipe.toml) registered in the zoo.

Modes (``DistillSettings.mode``): ``gold`` (labels only), ``single`` (one teacher), ``avg`` (the teachers' mean logit as
one target, one head — TextBrewer's MultiTeacherDistiller), ``mkdm`` (one head per teacher). Optional TMKD stage 1
(``pretrain_unlabelled``): soft-label-only training on a pool of teacher-scored unlabelled pairs built from the train
texts, before the labelled stage; or, with ``[data] unlabelled = FILE``, on the user's own pairs, streamed shard by
shard (``qadistill.stage1``).
"""

from __future__ import annotations

import json
import math
import platform
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from qadistill import __version__, paths
from qadistill.data import QADataset, QAPair, unique
from qadistill.errors import UserInputError
from qadistill.locks import artifact_lock
from qadistill.fsutil import atomic_write_text, check_replaceable, replace_dir
from qadistill.integrity import write_checksums
from qadistill.cards import model_card  # noqa: F401  (re-exported)
from qadistill.metrics import ranking_metrics, stored
from qadistill.progress import NullProgress, Progress
from qadistill.recipes import ContinueInit, PipelineRecipe, PruneInit, StudentRecipe, recipe_to_dict, recipe_to_toml
from qadistill.splits import WHOLE, Splits, is_named, load_split, require_labelled, resolve_splits
from qadistill.teachers import spread_targets, teacher_targets


@dataclass
class PoolSettings:
    """TMKD stage-1 pool: built from the train split's texts only (never dev/test)."""

    own: bool = True  # each train question with its own document's sentences (labels ignored)
    hard_k: int = 5  # top-k most similar sentences from other documents (by the first bi-encoder teacher)
    random_k: int = 3  # random sentences from other documents
    titles: bool = True  # each document title as a query against its own sentences
    pseudo_queries: int = 0  # per document, this many of its sentences as queries against its other sentences
    seed: int = 0

    @classmethod
    def from_recipe(cls, d) -> "PoolSettings":
        """The pool a pipeline's [distill] asks for (``pool_hard_negatives``, ``pool_pseudo_queries``)."""
        return cls(hard_k=d.pool_hard_negatives, pseudo_queries=d.pool_pseudo_queries)


@dataclass
class DistillResult:
    name: str
    path: str
    metrics: dict
    run_id: str | None = None
    extra: dict = field(default_factory=dict)


def build_unlabelled_pool(train: QADataset, embedder=None, settings: PoolSettings | None = None, progress: Progress | None = None) -> QADataset:
    """Unlabelled query–passage pairs from the train texts, for the teachers to label."""
    import numpy as np

    s = settings or PoolSettings()
    rng = random.Random(s.seed)
    groups = train.query_groups()
    sentences: dict[str, tuple[str, str]] = {}  # passage_id -> (doc, text)
    doc_of_q: dict[str, str] = {}
    titles: dict[str, str] = {}
    for p in train.pairs:
        doc = p.passage_id.rsplit("-", 1)[0]
        sentences.setdefault(p.passage_id, (doc, p.passage))
        doc_of_q[p.query_id] = doc
        if p.title:
            titles.setdefault(doc, p.title)
    pids = list(sentences)
    out: list[QAPair] = []
    seen: set[tuple[str, str]] = set()

    def add(qid: str, q: str, pid: str) -> None:
        if (qid, pid) not in seen:
            seen.add((qid, pid))
            out.append(QAPair(qid, q, pid, sentences[pid][1], None))

    queries = {qid: train.pairs[idx[0]].query for qid, idx in groups.items()}
    if s.own:
        for p in train.pairs:
            add(p.query_id, p.query, p.passage_id)
    if s.hard_k and embedder is not None:
        texts = unique(list(queries.values()) + [sentences[pid][1] for pid in pids])
        emb = embedder.embed(texts, progress, "pool texts")
        index = {t: i for i, t in enumerate(texts)}
        Q = emb[[index[q] for q in queries.values()]]
        S = emb[[index[sentences[pid][1]] for pid in pids]]
        sims = Q @ S.T
        docs = np.array([sentences[pid][0] for pid in pids])
        for row, (qid, q) in enumerate(queries.items()):
            sim = np.where(docs == doc_of_q[qid], -np.inf, sims[row])
            for j in np.argpartition(-sim, s.hard_k)[: s.hard_k]:
                add(qid, q, pids[int(j)])
    if s.random_k:
        for qid, q in queries.items():
            for pid in rng.sample(pids, min(len(pids), s.random_k + 3)):
                if sentences[pid][0] != doc_of_q[qid]:
                    add(qid, q, pid)
    by_doc: dict[str, list[str]] = {}
    for pid, (doc, _) in sentences.items():
        by_doc.setdefault(doc, []).append(pid)
    if s.titles:
        for doc, title in titles.items():
            for pid in by_doc.get(doc, []):
                add(f"title:{doc}", title, pid)
    if s.pseudo_queries:
        _add_pseudo_queries(by_doc, sentences, s.pseudo_queries, rng, add)
    return QADataset(train.name, f"{train.split}-pool", out, train.path)


def _add_pseudo_queries(by_doc: dict, sentences: dict, k: int, rng: random.Random, add) -> None:
    """Inverse-cloze pairs: in each document of two or more sentences, ``k`` sentences (seeded) become queries against
    the document's other sentences, one candidate list each (the teachers say which neighbour answers it best)."""
    for doc, pids in by_doc.items():
        if len(pids) < 2:
            continue
        for q in rng.sample(pids, min(k, len(pids))):
            qtext = sentences[q][1]
            for pid in pids:
                if pid != q:
                    add(f"sent:{q}", qtext, pid)


def n_heads(mode: str, n_teachers: int) -> int:
    return n_teachers if mode == "mkdm" else 1


def evaluate_student(model, tok, ds: QADataset, max_length: int, label: str | None = None) -> dict:
    """Metrics of the student on ``ds``, tagged with the data they came from (``label``: 'wikiqa:test', 'FILE:dev')."""
    from qadistill.train import score_pairs

    require_labelled(ds, label or ds.name)
    s = score_pairs(model, tok, ds.pairs, max_length)
    return {"data": label or f"{ds.name}:{ds.split}", **ranking_metrics([p.query_id for p in ds.pairs], s.tolist(), ds.labels())}


@dataclass
class _Plan:
    """Everything a distillation run needs, loaded and checked before any expensive step."""

    pipeline: PipelineRecipe
    student_recipe: StudentRecipe
    teacher_recipes: list
    name: str
    out_dir: Path
    splits: Splits
    train: QADataset
    extra: dict  # spec -> labelled QADataset, evaluated at the end (never trained on)
    unlabelled: object = None  # stage1.UnlabelledPool of [data] unlabelled, validated and hashed

    @property
    def stage1(self) -> bool:
        return self.pipeline.distill.pretrain_unlabelled or self.unlabelled is not None


def plan_distill(pipeline: PipelineRecipe, registry, name: str | None = None, out_dir: Path | None = None,
                 extra_evals: list[str] | None = None, overwrite: bool = False, resume: bool = False) -> _Plan:
    """Resolve names and load every dataset (train, dev, test, --eval-also) up front: bad input fails here, in seconds."""
    d, s = pipeline.distill, pipeline.data
    student_recipe = registry.recipe(pipeline.student, "student")
    assert isinstance(student_recipe, StudentRecipe)
    teacher_recipes = [registry.recipe(t, "teacher") for t in pipeline.teachers]
    tmkd = d.pretrain_unlabelled or s.unlabelled is not None
    name = paths.check_name(name or f"{pipeline.name}-{d.mode}" + ("-tmkd" if tmkd else "") + f"-s{d.seed}")
    _check_name_free(registry, name, overwrite)  # --resume continues an unfinished run: it never replaces a built one
    splits = resolve_splits(s.name, s.train_split, s.dev_split, s.test_split, s.dev, s.test, s.split_seed, tuple(s.split_fractions))
    for which, ds in (("dev", splits.dev), ("test", splits.test)):
        require_labelled(ds, f"{splits.label(which)} ({which} data)")
    if tmkd and not pipeline.teachers:
        raise UserInputError("TMKD stage 1 (--pretrain-unlabelled / --unlabelled) needs teachers to score its pairs",
                             "add --teachers, or drop --pretrain-unlabelled and --unlabelled")
    if d.mode == "gold" or (d.alpha > 0 and not d.pretrain_unlabelled and not pipeline.teachers):
        require_labelled(splits.train, f"{splits.label('train')} (gold labels are trained on)")
    _check_student_length(student_recipe, registry, d.max_length)
    from qadistill.student import check_init

    check_init(student_recipe, registry)  # a truncation deeper than its source: said now, not after the teachers score
    train_ds = splits.train.subset_queries(s.limit_train_queries) if s.limit_train_queries else splits.train
    extra = {spec: _eval_also(spec, splits.train) for spec in extra_evals or []}
    out = Path(out_dir) if out_dir else paths.artifacts_dir() / name
    _check_built_source(student_recipe, registry, out, train_ds, splits.label("train"))
    check_replaceable(out)
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise UserInputError(f"{out} already holds a model: rebuilding would replace it",
                             "pass --overwrite to replace it, or pick another --out / --name")
    pool = _unlabelled_pool(s.unlabelled) if s.unlabelled else None  # read through once: a bad row fails now
    _check_lists(pipeline, train_ds, splits.label("train"), pool)
    return _Plan(pipeline, student_recipe, teacher_recipes, name, out, splits, train_ds, extra, pool)


LISTS_HINT = "keep each query's candidates together (one query id; in a pool file, consecutive rows), or use --loss pointwise"


def _check_lists(pipeline: PipelineRecipe, train_ds: QADataset, train_label: str, pool) -> None:
    """A ranking loss (listwise, margin-mse) compares a query's candidates: data where no query has two of them would
    train on a loss of zero, so it is refused here, before any scoring (a mostly-singleton pool is a plan note)."""
    d = pipeline.distill
    if d.loss == "pointwise":
        return
    if pool is not None and pool.single_lists == pool.lists:
        raise UserInputError(f"{pool.path}: every query has one candidate (a query's list is its run of consecutive rows), "
                             f"so --loss {d.loss} has nothing to rank in stage 1", LISTS_HINT)
    teachers_rank = bool(pipeline.teachers) and d.alpha < 1 and d.mode != "gold"
    if teachers_rank and not any(len(v) > 1 for v in train_ds.query_groups().values()):
        raise UserInputError(f"{train_label}: no query has two or more candidates, so --loss {d.loss} has nothing to rank",
                             LISTS_HINT)
    gold_ranks = d.loss == "listwise" and (d.mode == "gold" or not pipeline.teachers or d.alpha == 1)
    if gold_ranks and not train_ds.stats()["queries_with_pos_and_neg"]:
        raise UserInputError(f"{train_label}: no query has both a correct and a wrong candidate, so the listwise gold "
                             "objective has nothing to rank", "use --loss pointwise (gold BCE), or label a wrong candidate per query")


def _unlabelled_pool(spec: str):
    from qadistill.scores import shard_pairs_default
    from qadistill.stage1 import scan_pool

    return scan_pool(spec, shard_pairs_default())  # shards cut as `qadistill score` cuts them: its scores are found


def plan_notes(plan: _Plan, resume: bool) -> list[str]:
    """What a user should know before the run starts: how the data was split, dev/test that overlap the training
    data (only when named that way), a dev set that cannot select weights, a --resume with nothing to resume."""
    notes = [plan.splits.describe()] if plan.splits.describe() else []
    for which, ds in (("dev", plan.splits.dev), ("test", plan.splits.test)):
        n = overlap(ds, plan.train)
        if n:
            notes.append(f"warning: the {which} data shares {n} of its {len(ds)} pairs with the training data "
                         f"(named with --{which}): its metrics are not held out")
    if not plan.splits.dev.stats()["queries_with_pos_and_neg"]:
        mix = ' (and stage1_mix "dev" serves share 0)' if plan.pipeline.distill.stage1_mix == "dev" and plan.stage1 else ""
        notes.append("warning: no dev query has both a correct and a wrong candidate: dev MAP cannot select weights, "
                     f"the last weights are kept{mix}")
    pool, loss = plan.unlabelled, plan.pipeline.distill.loss
    if pool is not None and loss != "pointwise":  # a ranking loss ranks each candidate list of the pool
        if pool.single_lists * 2 >= pool.lists:
            notes.append(f"warning: {pool.single_lists} of the {pool.lists} candidate lists in {pool.path} have one "
                         f"candidate, which --loss {loss} cannot rank: {LISTS_HINT}")
        if pool.lists > pool.queries:
            notes.append(f"note: {pool.path} has {pool.queries} queries in {pool.lists} runs of consecutive rows: a query "
                         f"whose rows are apart is ranked as separate lists (sort the file by query to rank them together)")
    from qadistill.finetune import resume_note

    note = resume_note(plan.out_dir, resume)
    if note:
        notes.append(note)
    return notes


def _check_student_length(student_recipe: StudentRecipe, registry, max_length: int) -> None:
    """--max-length must fit the student's position embeddings (a random config student has BERT's 512)."""
    from qadistill.recipes import ConfigInit
    from qadistill.sources import check_max_length
    from qadistill.student import encoder_folder_for

    if isinstance(student_recipe.init, ConfigInit):
        if max_length > 512:
            raise UserInputError(f"--max-length {max_length} is longer than the student can read (512 positions)", "use --max-length 512 or less")
        return
    check_max_length(encoder_folder_for(student_recipe, registry), max_length)


def _check_name_free(registry, name: str, replace: bool) -> None:
    """An artifact name must not hide a recipe, and an existing artifact is replaced only when asked (--overwrite)."""
    from qadistill.errors import UnknownNameError

    try:
        e = registry.get(name)
    except UnknownNameError:
        return
    if e.origin in ("builtin", "user"):
        raise UserInputError(f"--name {name!r} is taken by a {e.origin} {e.kind} recipe", "pick another --name")
    if not replace:
        raise UserInputError(f"artifact '{name}' already exists ({e.path}): rebuilding it would replace it",
                             f"pass --overwrite to replace it, pick another --name, or `qadistill zoo remove {name} --delete-files`")


def eval_also_split(spec: str) -> tuple[str, str]:
    """An --eval-also set's (data, split): a named dataset's default is dev, a file is read whole (``all``) unless a
    split is given ('FILE:test')."""
    ds_name, _, split = spec.partition(":")
    return ds_name, split or ("dev" if is_named(ds_name) else WHOLE)


def eval_also_label(spec: str) -> str:
    """How results name an --eval-also set: 'trecqa:dev', 'ABSPATH:all', as eval names its data."""
    from qadistill.splits import dataset_label

    ds_name, split = eval_also_split(spec)
    return f"{dataset_label(ds_name)}:{split}"


def _eval_also(spec: str, train: QADataset) -> QADataset:
    """Validation data is never trained on: it must be labelled and share no pair with the training data."""
    ds = load_split(*eval_also_split(spec))
    require_labelled(ds, f"--eval-also {spec}")
    n = overlap(ds, train)
    if n:
        raise UserInputError(f"--eval-also {spec} shares {n} of its {len(ds)} pairs with the training data: it would "
                             "measure what the student trained on", "name data held out from training (e.g. trecqa:dev)")
    return ds


def overlap(a: QADataset, b: QADataset) -> int:
    """How many (query, passage) pairs of ``a`` are also in ``b``."""
    seen = {(p.query, p.passage) for p in b.pairs}
    return sum((p.query, p.passage) in seen for p in a.pairs)


def _score_teachers(plan: _Plan, teachers: list, progress: Progress) -> tuple:
    """Teacher targets for the train pairs that are trained on (a ``limit_train_queries`` slice scores the slice only;
    bi-encoders calibrate on their recipe's calibration split, cached). Every process of a launch runs this: each
    scores its share of the shards (``parallel.collective``), so a pair is scored once in all, not once per process."""
    from qadistill import parallel

    with parallel.collective():
        return teacher_targets(teachers, plan.train, plan.pipeline.distill.mode, progress)


def _builtin_pool(plan: _Plan, teachers: list, progress: Progress, pool: PoolSettings | None) -> tuple:
    """The pool built from the train texts and its teacher targets (labelled by ``_stage1_teachers``), and the seconds
    the labelling took. Every process of a launch builds the same pool: the embedding and scoring are shared out."""
    from qadistill import parallel
    from qadistill.teachers import BiEncoderTeacher

    embedder = next((t for t in teachers if isinstance(t, BiEncoderTeacher)), None)
    chosen, layout = _stage1_teachers(plan, teachers)
    with parallel.collective():
        pool_ds = build_unlabelled_pool(plan.train, embedder, pool or PoolSettings.from_recipe(plan.pipeline.distill), progress)
        t0 = time.perf_counter()
        targets = spread_targets(teacher_targets(chosen, pool_ds, "avg" if plan.pipeline.distill.mode == "avg" else "mkdm", progress), layout)
    if plan.pipeline.distill.mode == "single":
        targets = targets[:, :1]
    return pool_ds, targets, time.perf_counter() - t0


def _stage1(plan: _Plan, model, tok, pool_set: tuple, base, work: Path, resume: bool, progress: Progress) -> dict:
    """TMKD stage 1: soft-label-only training on teacher-scored unlabelled pairs built from the train texts."""
    from qadistill.train import train

    pool_ds, pool_targets, _ = pool_set
    state = train(model, tok, pool_ds.pairs, pool_targets, _stage1_config(base, plan.pipeline.distill.unlabelled_passes),
                  work / "stage1", dev=plan.splits.dev,
                  resume=resume, progress=progress, label="stage 1 (unlabelled)")
    state["pool_pairs"] = len(pool_ds)
    return state


def _stage1_teachers(plan: _Plan, teachers: list) -> tuple[list, list | None]:
    """The teachers that label stage 1's pool ([distill] unlabelled_teachers; default all) and, under mkdm, the head
    layout of their targets (``teachers.stage1_layout``; None: the targets as they are, one column per head or avg's one)."""
    from qadistill.teachers import stage1_layout

    names = [t.name for t in teachers]
    wanted = plan.pipeline.distill.unlabelled_teachers
    layout = stage1_layout(names, wanted)
    chosen = teachers if layout is None else [teachers[names.index(n)] for n in wanted]
    return chosen, layout if plan.pipeline.distill.mode == "mkdm" else None


def _stage1_config(base, passes: int):
    """Stage 1 trains on the teachers only (alpha 0, no rehearsal: the pool is what it trains on) and keeps its last
    weights for stage 2."""
    from qadistill.train import TrainConfig

    return TrainConfig(**{**base.__dict__, "epochs": passes, "alpha": 0.0, "select_on_dev": False, "epochs_setting": "unlabelled_passes",
                          "rehearse": 0.0})


def _file_pool_targets(plan: _Plan, teachers: list, progress: Progress):
    """How the [data] unlabelled file's shards are labelled (``stage1.ShardTargets``), for stage 1 and rehearsal alike:
    by ``_stage1_teachers``, through the score store."""
    from qadistill.stage1 import ShardTargets

    chosen, layout = _stage1_teachers(plan, teachers)
    return ShardTargets(chosen, plan.pipeline.distill.mode, plan.unlabelled.shard_pairs, progress, layout=layout)


def _stage1_stream(plan: _Plan, model, tok, teachers: list, base, work: Path, resume: bool, progress: Progress) -> tuple:
    """TMKD stage 1 on the [data] unlabelled file, streamed shard by shard (``qadistill.stage1``)."""
    from qadistill.stage1 import train_stream

    d, pool = plan.pipeline.distill, plan.unlabelled
    targets = _file_pool_targets(plan, teachers, progress)
    state = train_stream(model, tok, pool, targets, _stage1_config(base, d.unlabelled_passes), work / "stage1",
                         dev=plan.splits.dev, resume=resume, progress=progress, label=f"stage 1 ({Path(pool.path).name})")
    state["pool_pairs"] = pool.pairs
    return state, targets.seconds


def _train_student(plan: _Plan, registry, work: Path, resume: bool, progress: Progress, pool: PoolSettings | None) -> dict:
    """Score with the teachers, build the student, (stage 1), stage 2. Returns the model, tokenizer and timings."""
    import torch

    from qadistill.student import make_student_class
    from qadistill.teachers import teacher_from_recipe
    from qadistill.train import train, train_config

    d = plan.pipeline.distill
    teachers = [teacher_from_recipe(r, registry) for r in plan.teacher_recipes]  # type: ignore[arg-type]
    t0 = time.perf_counter()
    targets = _score_teachers(plan, teachers, progress)
    teacher_seconds = time.perf_counter() - t0
    encoder, tok, pruned = _build(plan, registry, d.seed)
    K = n_heads(d.mode, len(teachers))
    torch.manual_seed(d.seed)
    model = make_student_class()(encoder, K, heads=d.heads)
    if pruned is not None:  # prune / continue: every head starts from the source's score
        from qadistill.student import heads_from_classifier

        heads_from_classifier(model, pruned[1])
    base = train_config(d)
    stage1 = pool_set = None
    if plan.unlabelled is None and (plan.stage1 or d.rehearse):
        pool_set = _builtin_pool(plan, teachers, progress, pool)
        teacher_seconds += pool_set[2]
    if plan.stage1:
        if plan.unlabelled is not None:
            stage1, secs = _stage1_stream(plan, model, tok, teachers, base, work, resume, progress)
            teacher_seconds += secs
        else:
            stage1 = _stage1(plan, model, tok, pool_set, base, work, resume, progress)
    # stage 1's last weights, for the served mix ([distill] stage1_mix; WiSE-FT between the two stages)
    stage1_weights = _weights_copy(model) if plan.stage1 and d.stage1_mix != 0 else None
    rehearsal = None
    if d.rehearse:
        t1 = time.perf_counter()
        rehearsal = _rehearsal_set(plan, teachers, pool_set, progress)
        teacher_seconds += time.perf_counter() - t1
    stage2 = train(model, tok, plan.train.pairs, targets, base, work / "stage2", dev=plan.splits.dev, resume=resume,
                   progress=progress, label=f"distill {d.mode}" + (f" + rehearsal x{d.rehearse:g}" if rehearsal else ""),
                   rehearsal=rehearsal)
    mix, mixed_from = _mix_stage1(plan, model, tok, stage1_weights) if stage1_weights is not None else (None, None)
    combination = _fit_combination(plan, model, tok) if head_combine(plan) == "learned" and K > 1 else None
    return {"model": model, "tok": tok, "heads": K, "stage1": stage1, "stage2": stage2, "teacher_seconds": teacher_seconds,
            "stage1_mix": mix, "mixed_from": mixed_from, "combination": combination, "pruned": pruned[0].to_dict() if pruned is not None and pruned[0] is not None else None,
            "teacher_folds": {t.name: len(t.folds()) for t in teachers if hasattr(t, "folds") and t.folds()}}


STAGE1_MIX_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the shares [distill] stage1_mix = "dev" chooses from


def _weights_copy(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def mix_weights(last: dict, first: dict, share: float) -> dict:
    """``(1 - share) x last + share x first``, tensor by tensor (integer buffers such as position ids: ``last``'s)."""
    import torch

    return {k: torch.lerp(v, first[k].to(v.dtype), share) if v.is_floating_point() else v for k, v in last.items()}


def _mix_stage1(plan: _Plan, model, tok, stage1_weights: dict) -> tuple[dict, tuple[dict, dict]]:
    """WiSE-FT between TMKD's stages ([distill] stage1_mix): the served weights are the labelled stage's moved toward
    stage 1's last by the share the recipe sets, or by the share of ``STAGE1_MIX_GRID`` with the best dev MAP. Every
    share's dev MAP is recorded (the curve), so a fixed share can be checked against its neighbours. Returns that
    record and the two sets of weights mixed (the labelled stage's, stage 1's) for ``_mix_curves``."""
    d, dev, label = plan.pipeline.distill, plan.splits.dev, plan.splits.label("dev")
    trained = _weights_copy(model)
    grid = sorted(set(STAGE1_MIX_GRID) | ({d.stage1_mix} if d.stage1_mix != "dev" else set()))
    curve = {}
    for share in grid:
        model.load_state_dict(mix_weights(trained, stage1_weights, share))
        curve[share] = evaluate_student(model, tok, dev, d.max_length, label)["map"]
    # an undefined dev MAP (no dev query with a correct and a wrong candidate) chooses nothing: share 0 then
    share = max(grid, key=lambda w: (curve[w] if curve[w] is not None else -1.0, -w)) if d.stage1_mix == "dev" else float(d.stage1_mix)
    model.load_state_dict(mix_weights(trained, stage1_weights, share))
    return {"setting": d.stage1_mix, "share": share, "dev_map": curve[share], "dev_map_unmixed": curve[0.0],
            "dev_curve": [{"share": w, "map": curve[w]} for w in grid], "fitted_on": label}, (trained, stage1_weights)


def _mix_curves(plan: _Plan, t: dict, sets: dict) -> None:
    """After the served mix is measured: every share of the dev curve measured on the other sets too (test and
    --eval-also; MAP and MRR), beside it, for the record only: the served share was fixed (or chosen on dev) before.
    The served weights go back into the model."""
    mix, (trained, first) = t["stage1_mix"], t["mixed_from"]
    model, tok, ml = t["model"], t["tok"], plan.pipeline.distill.max_length
    curves = {key: [] for key in sets}
    for c in mix["dev_curve"]:
        model.load_state_dict(mix_weights(trained, first, c["share"]))
        for key, (ds, label) in sets.items():
            m = evaluate_student(model, tok, ds, ml, label)
            curves[key].append({"share": c["share"], "map": m["map"], "mrr": m["mrr"]})
    model.load_state_dict(mix_weights(trained, first, mix["share"]))
    mix["curves"] = {key: {"data": sets[key][1], "by_share": rows} for key, rows in curves.items()}


def _rehearsal_set(plan: _Plan, teachers: list, pool_set: tuple | None, progress: Progress) -> tuple:
    """The teacher-labelled pairs the labelled stage rehearses ([distill] rehearse): the built-in pool as a whole, or
    from a [data] unlabelled file a seeded draw of whole shards, enough for every epoch's draw (``stage1.rehearsal_sample``:
    memory grows with what is drawn, not with the file)."""
    if pool_set is not None:
        return pool_set[0].pairs, pool_set[1]
    from qadistill.stage1 import rehearsal_sample

    d = plan.pipeline.distill
    want = math.ceil(d.rehearse * len(plan.train) * d.epochs * 1.25)  # a ranking loss packs lists: some slack
    return rehearsal_sample(plan.unlabelled, _file_pool_targets(plan, teachers, progress), want, d.seed)


def head_combine(plan: _Plan) -> str:
    """The pipeline's [distill] head_combine, else the student recipe's."""
    return plan.pipeline.distill.head_combine or plan.student_recipe.head_combine


def _fit_combination(plan: _Plan, model, tok) -> dict:
    """Convex head weights fitted on the dev split (``qadistill.heads``); the model serves them where they beat the mean."""
    from qadistill.heads import fit_head_weights, head_logits

    dev = plan.splits.dev
    fit = fit_head_weights(head_logits(model, tok, dev.pairs, plan.pipeline.distill.max_length),
                           [p.query_id for p in dev.pairs], dev.labels())
    model.set_head_weights(fit["weights"])
    return {**fit, "fitted_on": plan.splits.label("dev")}


def _evaluate_all(plan: _Plan, t: dict) -> dict:
    """Metrics of the served student on test and every --eval-also set. With learned head weights, the same run's
    per-head logits also give the plain mean's metrics (``t["combination"]["mean_metrics"]``), so both are reported;
    with a stage-1 mix, every share of its curve is measured on these sets too (``_mix_curves``)."""
    model, tok, ml = t["model"], t["tok"], plan.pipeline.distill.max_length
    sets = {"test": (plan.splits.test, plan.splits.label("test"))}
    sets.update({spec: (ds, eval_also_label(spec)) for spec, ds in plan.extra.items()})
    if t.get("combination") is None:
        metrics = {key: evaluate_student(model, tok, ds, ml, label) for key, (ds, label) in sets.items()}
    else:
        from qadistill.heads import combined_metrics, head_logits

        metrics, mean_metrics = {}, {}
        k = t["heads"]
        for key, (ds, label) in sets.items():
            require_labelled(ds, label)
            logits = head_logits(model, tok, ds.pairs, ml)
            metrics[key] = {"data": label, **combined_metrics(logits, ds, t["combination"]["weights"])}
            mean_metrics[key] = {"data": label, **combined_metrics(logits, ds, [1.0 / k] * k)}
        t["combination"]["mean_metrics"] = mean_metrics
    if t.get("stage1_mix"):
        _mix_curves(plan, t, sets)
    return metrics


def _info(plan: _Plan, t: dict, metrics: dict, total_seconds: float, command: str) -> dict:
    import torch

    from qadistill.student import parameter_count

    stage1, stage2, d = t["stage1"], t["stage2"], plan.pipeline.distill
    return {
        "name": plan.name, "qadistill_version": __version__, "pipeline": recipe_to_dict(plan.pipeline),
        "student": recipe_to_dict(plan.student_recipe), "teachers": [recipe_to_dict(r) for r in plan.teacher_recipes],
        "parameters": parameter_count(t["model"].to_sequence_classifier()), "heads": t["heads"],
        "head_kind": d.heads, "head_combine": head_combine(plan), "head_weights": [float(x) for x in t["model"].head_weights()],
        "head_combination": t.get("combination"), "pruned": t.get("pruned"), "stage1_mix": t.get("stage1_mix"),
        "teacher_folds": t.get("teacher_folds") or {},  # cross-fitted teachers: how many fold models scored their own training queries
        # the served weights' dev MAP: the labelled stage's best, or the stage-1 mix's
        "dev_map": t["stage1_mix"]["dev_map"] if t.get("stage1_mix") else stage2["best_map"] if stage2["best_map"] >= 0 else None,
        "dev_data": plan.splits.label("dev"),
        "splits": plan.splits.info, "metrics": metrics,
        "train_pairs": len(plan.train), "train_data_fingerprint": plan.train.fingerprint(),
        "unlabelled": plan.unlabelled.info(d.unlabelled_passes) if plan.unlabelled is not None else None,
        "stage1": _slim(stage1), "stage2": _slim(stage2), "teacher_scoring_seconds": t["teacher_seconds"],
        "train_seconds": stage2["train_seconds"] + (stage1["train_seconds"] if stage1 else 0.0),
        # of which spent before a --resume, by the interrupted run(s): total_seconds counts this process only
        "train_seconds_before_resume": sum((s or {}).get("train_seconds_before", 0.0) for s in (stage1, stage2)),
        "total_seconds": total_seconds, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "command": command, "max_length": d.max_length,
    }


def _save(plan: _Plan, t: dict, info: dict, work: Path) -> None:
    """Write the folder under ``work/final`` and rename it into place: a failure leaves nothing half-written."""
    from qadistill.student import save_student

    d = plan.pipeline.distill
    final_tmp = work / "final"
    try:
        if final_tmp.exists():
            shutil.rmtree(final_tmp)
        save_student(t["model"], t["tok"], final_tmp, {"qadistill": {"mode": d.mode, "teachers": plan.pipeline.teachers,
                                                                     "heads_folded": t["heads"], "head_kind": d.heads,
                                                                     "head_weights": info["head_weights"]}})
        atomic_write_text(final_tmp / "metrics.json", json.dumps(info, indent=2))
        atomic_write_text(final_tmp / "recipe.toml", recipe_to_toml(plan.pipeline))
        atomic_write_text(final_tmp / "README.md", model_card(info))
        write_checksums(final_tmp)  # after every file: metrics.json, recipe.toml and the card are covered too
        plan.out_dir.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(final_tmp, plan.out_dir)
    except BaseException:
        shutil.rmtree(final_tmp, ignore_errors=True)  # the checkpoints stay: --resume redoes only the save
        raise


def _record_results(store, plan: _Plan, metrics: dict, run_id: str | None) -> None:
    for m in metrics.values():
        ds_name, _, split = m["data"].rpartition(":")
        store.add_results(plan.name, ds_name, split, stored(m), run_id=run_id, notes=m.get("undefined"))


def run_distill(
    pipeline: PipelineRecipe,
    registry,
    store=None,
    name: str | None = None,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    pool: PoolSettings | None = None,
    extra_evals: list[str] | None = None,
    command: str = "",
    notify=None,
    overwrite: bool = False,
) -> DistillResult:
    """plan (validate, load data) → score → (stage 1) → train → evaluate → record results → save → register."""
    import torch
    from accelerate import PartialState

    # the first PartialState fixes the distributed set-up: on a CPU-only machine it must be created with cpu=True so
    # that `torchrun --nproc_per_node N` gives MULTI_CPU (gloo) data parallelism
    PartialState(cpu=not torch.cuda.is_available())
    main_process = PartialState().is_main_process  # under `accelerate launch`, only rank 0 writes and evaluates
    progress = (progress or NullProgress()) if main_process else NullProgress()
    plan = plan_distill(pipeline, registry, name, out_dir, extra_evals, overwrite, resume)
    if notify is not None and main_process:
        for line in plan_notes(plan, resume):
            notify(line)
    if not main_process:
        return _run_rank(plan, registry, resume, pool)
    with artifact_lock(plan.name):
        return _run_main(plan, registry, store, resume, progress, pool, command)


def _run_rank(plan: _Plan, registry, resume: bool, pool: PoolSettings | None) -> DistillResult:
    """A non-main process of a data-parallel run: trains its shard, writes nothing."""
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    work = paths.work_path(plan.out_dir)
    _train_student(plan, registry, work, resume, NullProgress(), pool)
    return DistillResult(plan.name, str(plan.out_dir), {"rank": PartialState().process_index}, None)


def _run_main(plan: _Plan, registry, store, resume: bool, progress: Progress, pool: PoolSettings | None, command: str) -> DistillResult:
    from accelerate import PartialState

    from qadistill.finetune import has_checkpoint, work_dir_for

    work = work_dir_for(plan.out_dir, resume)
    PartialState().wait_for_everyone()
    params = recipe_to_dict(plan.pipeline) | {"artifact": plan.name, "splits": plan.splits.info}
    run_id = store.start_run("distill", recipe=plan.pipeline.name, params=params) if store else None
    t_start, started_at = time.perf_counter(), time.time()
    try:
        t = _train_student(plan, registry, work, resume, progress, pool)
        metrics = _evaluate_all(plan, t)
        if store is not None:  # results first: nothing that fails later can lose them
            store.drop_stale_results(plan.name, started_at)
            _record_results(store, plan, metrics, run_id)
        info = _info(plan, t, metrics, time.perf_counter() - t_start, command)
        _save(plan, t, info, work)
        if store is not None:
            d = plan.pipeline.distill
            store.add_artifact(plan.name, "student-model", plan.out_dir, recipe=plan.pipeline.name, run_id=run_id,
                               manifest={"parameters": info["parameters"], "max_length": d.max_length, "mode": d.mode,
                                         "teachers": plan.pipeline.teachers, "data": plan.splits.label("test"),
                                         "description": f"{d.mode} student of {plan.pipeline.name}"})
            store.finish_run(run_id, "ok")
    except KeyboardInterrupt as exc:
        if store:
            store.end_run_quietly(run_id, "interrupted")
        exc.checkpoint = has_checkpoint(work)  # type: ignore[attr-defined]  (what the message can promise)
        raise
    except BaseException:
        if store:
            store.end_run_quietly(run_id, "failed")
        raise
    try:
        shutil.rmtree(work, ignore_errors=True)
    except KeyboardInterrupt as exc:  # the student is saved and registered: only the clean-up was cut short
        exc.saved = plan.name  # type: ignore[attr-defined]
        raise
    return DistillResult(plan.name, str(plan.out_dir), info, run_id)


def _check_built_source(recipe: StudentRecipe, registry, out: Path, train_ds, train_label: str) -> None:
    """Before any work, for a student that starts from a built one (init prune / continue): the source is a one-logit
    BERT student the init really changes (prune), pruning has labels to rank units with, and the run's output is not
    the source itself."""
    init = recipe.init
    if not isinstance(init, (PruneInit, ContinueInit)):
        return
    from qadistill.prune import check_init, check_source
    from qadistill.student import encoder_folder_for

    source = encoder_folder_for(recipe, registry)
    if isinstance(init, PruneInit):
        check_init(source, init)
        if init.intermediate_size is not None:
            require_labelled(train_ds, f"{train_label} (pruning ranks feed-forward units with the gold loss)")
    else:
        check_source(source, "continue")
    if out.resolve() == source.resolve():
        raise UserInputError(f"{out} is the built student this run starts from (init.model '{init.model}' of student "
                             f"'{recipe.name}'): the run would replace its own source",
                             "pick another --name / --out (the source stays as it was built)")


def _build(plan: _Plan, registry, seed: int) -> tuple:
    """(encoder, tokenizer, None) for the student recipe's init; for ``prune``, (pruned encoder, tokenizer,
    (PruneReport, the source's classifier)), ranked on the first ``importance_queries`` train questions; for
    ``continue``, (the source's encoder, tokenizer, (None, its classifier))."""
    from qadistill.student import build_encoder, encoder_folder_for

    init = plan.student_recipe.init
    if isinstance(init, ContinueInit):
        from qadistill.prune import continued_encoder

        encoder, tok, classifier = continued_encoder(encoder_folder_for(plan.student_recipe, registry))
        return encoder, tok, (None, classifier)
    if isinstance(init, PruneInit):
        from qadistill.prune import pruned_encoder

        pairs = plan.train.subset_queries(init.importance_queries).pairs
        encoder, tok, report, classifier = pruned_encoder(encoder_folder_for(plan.student_recipe, registry),
                                                          init, pairs, plan.pipeline.distill.max_length,
                                                          source=init.model)
        return encoder, tok, (report, classifier)
    return (*build_encoder(plan.student_recipe, registry, seed), None)


def _slim(state: dict | None) -> dict | None:
    if state is None:
        return None
    keep = ("step", "best_map", "best_step", "history", "train_seconds", "train_seconds_before", "pairs_seen", "stopped_early",
            "pool_pairs", "seconds_per_pair", "rehearsal")
    return {k: state[k] for k in keep if k in state}
