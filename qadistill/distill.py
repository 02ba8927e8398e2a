"""`qadistill distill`: score the data with every teacher (cached), train the student MKDM-style, evaluate, and save a
Hub-style model folder (config, tokenizer, safetensors, model card, metrics.json, recipe.toml) registered in the zoo.

Modes (``DistillSettings.mode``): ``gold`` (labels only), ``single`` (one teacher), ``avg`` (the teachers' mean logit as
one target, one head — TextBrewer's MultiTeacherDistiller), ``mkdm`` (one head per teacher). Optional TMKD stage 1
(``pretrain_unlabelled``): soft-label-only training on a pool of teacher-scored unlabelled pairs built from the train
texts, before the labelled stage.
"""

from __future__ import annotations

import json
import platform
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from qadistill import __version__, paths
from qadistill.data import QADataset, QAPair, load_dataset, unique
from qadistill.errors import UserInputError
from qadistill.fsutil import atomic_write_text, replace_dir
from qadistill.metrics import ranking_metrics
from qadistill.progress import NullProgress, Progress
from qadistill.recipes import PipelineRecipe, StudentRecipe, recipe_to_dict, recipe_to_toml


@dataclass
class PoolSettings:
    """TMKD stage-1 pool: built from the train split's texts only (never dev/test)."""

    own: bool = True  # each train question with its own document's sentences (labels ignored)
    hard_k: int = 5  # top-k most similar sentences from other documents (by the first bi-encoder teacher)
    random_k: int = 3  # random sentences from other documents
    titles: bool = True  # each document title as a query against its own sentences
    seed: int = 0


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
    if s.titles:
        by_doc: dict[str, list[str]] = {}
        for pid, (doc, _) in sentences.items():
            by_doc.setdefault(doc, []).append(pid)
        for doc, title in titles.items():
            for pid in by_doc.get(doc, []):
                add(f"title:{doc}", title, pid)
    return QADataset(train.name, f"{train.split}-pool", out, train.path)


def teacher_targets(teachers: list, ds: QADataset, mode: str, progress: Progress):
    """Teacher logits reduced for the mode: mkdm [N, K]; avg [N, 1] (mean); single [N, 1]; gold None."""
    import numpy as np

    if mode == "gold" or not teachers:
        return None
    cols = [t.logits(ds, progress) for t in teachers]
    mat = np.stack(cols, axis=1).astype(np.float32)
    if mode == "avg":
        return mat.mean(axis=1, keepdims=True)
    return mat


def n_heads(mode: str, n_teachers: int) -> int:
    return n_teachers if mode == "mkdm" else 1


def evaluate_student(model, tok, ds: QADataset, max_length: int) -> dict:
    from qadistill.train import score_pairs

    s = score_pairs(model, tok, ds.pairs, max_length)
    return ranking_metrics([p.query_id for p in ds.pairs], s.tolist(), ds.labels())


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
) -> DistillResult:
    import torch

    from qadistill.finetune import work_dir_for
    from qadistill.student import make_student_class, parameter_count, save_student
    from qadistill.teachers import BiEncoderTeacher, teacher_from_recipe
    from qadistill.train import TrainConfig, train

    from accelerate import PartialState

    # the first PartialState fixes the distributed set-up: on a CPU-only machine it must be created with cpu=True so
    # that `torchrun --nproc_per_node N` gives MULTI_CPU (gloo) data parallelism
    PartialState(cpu=not torch.cuda.is_available())
    main_process = PartialState().is_main_process  # under `accelerate launch`, only rank 0 writes and evaluates
    progress = (progress or NullProgress()) if main_process else NullProgress()
    d, s = pipeline.distill, pipeline.data
    student_recipe = registry.recipe(pipeline.student, "student")
    assert isinstance(student_recipe, StudentRecipe)
    teacher_recipes = [registry.recipe(t, "teacher") for t in pipeline.teachers]
    name = name or f"{pipeline.name}-{d.mode}" + ("-tmkd" if d.pretrain_unlabelled else "") + f"-s{d.seed}"
    out_dir = Path(out_dir) if out_dir else paths.artifacts_dir() / name
    if main_process:
        work = work_dir_for(out_dir, resume)
    else:
        work = out_dir.with_name(out_dir.name + ".work")
    PartialState().wait_for_everyone()
    if not main_process:
        store = None
    run_id = store.start_run("distill", recipe=pipeline.name, params=recipe_to_dict(pipeline) | {"artifact": name}) if store else None
    t_start = time.perf_counter()
    try:
        full_train = load_dataset(s.name, s.train_split)
        train_ds = full_train.subset_queries(s.limit_train_queries) if s.limit_train_queries else full_train
        dev = load_dataset(s.name, s.dev_split)
        test = load_dataset(s.name, s.test_split)
        teachers = [teacher_from_recipe(r, registry) for r in teacher_recipes]  # type: ignore[arg-type]
        t0 = time.perf_counter()
        # teachers score the whole train split (cached, and bi-encoders calibrate on it anyway), then the slice is taken
        targets = teacher_targets(teachers, full_train, d.mode, progress)
        if targets is not None and train_ds is not full_train:
            keep = {p.query_id for p in train_ds.pairs}
            targets = targets[[i for i, p in enumerate(full_train.pairs) if p.query_id in keep]]
        teacher_seconds = time.perf_counter() - t0

        encoder, tok = _build(student_recipe, registry, d.seed)
        K = n_heads(d.mode, len(teachers))
        torch.manual_seed(d.seed)
        model = make_student_class()(encoder, K, learned_weights=student_recipe.head_combine == "learned")
        base = TrainConfig(epochs=d.epochs, batch_size=d.batch_size, learning_rate=d.learning_rate, warmup_ratio=d.warmup_ratio,
                           max_length=d.max_length, temperature=d.temperature, alpha=d.alpha, seed=d.seed)
        stage1 = None
        if d.pretrain_unlabelled:
            if not teachers:
                raise UserInputError("pretrain_unlabelled needs teachers", "drop --pretrain-unlabelled or add --teachers")
            embedder = next((t for t in teachers if isinstance(t, BiEncoderTeacher)), None)
            pool_ds = build_unlabelled_pool(train_ds, embedder, pool, progress)
            t0 = time.perf_counter()
            pool_targets = teacher_targets(teachers, pool_ds, "avg" if d.mode == "avg" else "mkdm", progress)
            if d.mode == "single":
                pool_targets = pool_targets[:, :1]
            teacher_seconds += time.perf_counter() - t0
            cfg1 = TrainConfig(**{**base.__dict__, "epochs": 1, "alpha": 0.0, "select_on_dev": False})
            stage1 = train(model, tok, pool_ds.pairs, pool_targets, cfg1, work / "stage1", dev=dev, resume=resume, progress=progress,
                           label="stage 1 (unlabelled)")
            stage1["pool_pairs"] = len(pool_ds)
        stage2 = train(model, tok, train_ds.pairs, targets, base, work / "stage2", dev=dev, resume=resume, progress=progress,
                       label=f"distill {d.mode}")

        if not main_process:
            return DistillResult(name, str(out_dir), {"rank": PartialState().process_index}, None)
        metrics = {"test": evaluate_student(model, tok, test, d.max_length)}
        for spec in extra_evals or []:
            ds_name, _, split = spec.partition(":")
            try:
                ds = load_dataset(ds_name, split or "dev")
            except Exception as exc:  # validation data is optional
                metrics[spec] = {"error": str(exc)}
                continue
            metrics[spec] = evaluate_student(model, tok, ds, d.max_length)
        total_seconds = time.perf_counter() - t_start
        info = {
            "name": name,
            "qadistill_version": __version__,
            "pipeline": recipe_to_dict(pipeline),
            "student": recipe_to_dict(student_recipe),
            "teachers": [recipe_to_dict(r) for r in teacher_recipes],
            "parameters": parameter_count(model.to_sequence_classifier()),
            "heads": K,
            "dev_map": stage2["best_map"],
            "metrics": metrics,
            "train_pairs": len(train_ds),
            "train_data_fingerprint": train_ds.fingerprint(),
            "stage1": _slim(stage1),
            "stage2": _slim(stage2),
            "teacher_scoring_seconds": teacher_seconds,
            "train_seconds": stage2["train_seconds"] + (stage1["train_seconds"] if stage1 else 0.0),
            "total_seconds": total_seconds,
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "command": command,
            "max_length": d.max_length,
        }
        final_tmp = work / "final"
        if final_tmp.exists():
            shutil.rmtree(final_tmp)
        save_student(model, tok, final_tmp, {"qadistill": {"mode": d.mode, "teachers": pipeline.teachers, "heads_folded": K}})
        atomic_write_text(final_tmp / "metrics.json", json.dumps(info, indent=2))
        atomic_write_text(final_tmp / "recipe.toml", recipe_to_toml(pipeline))
        atomic_write_text(final_tmp / "README.md", model_card(info))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(final_tmp, out_dir)
        shutil.rmtree(work, ignore_errors=True)
    except KeyboardInterrupt:
        if store and run_id:
            store.finish_run(run_id, "interrupted")
        raise
    except BaseException:
        if store and run_id:
            store.finish_run(run_id, "failed")
        raise
    if store is not None:
        store.add_artifact(name, "student-model", out_dir, recipe=pipeline.name, run_id=run_id,
                           manifest={"parameters": info["parameters"], "max_length": d.max_length, "mode": d.mode,
                                     "teachers": pipeline.teachers, "description": f"{d.mode} student of {pipeline.name}"})
        for spec, m in metrics.items():
            if "map" in m:
                ds_name, split = (s.name, s.test_split) if spec == "test" else (spec.partition(":")[0], spec.partition(":")[2] or "dev")
                store.add_results(name, ds_name, split, {k: m[k] for k in ("map", "mrr", "p@1", "accuracy", "f1", "auc")}, run_id=run_id)
        store.finish_run(run_id, "ok")
    return DistillResult(name, str(out_dir), info, run_id)


def _build(student_recipe, registry, seed):
    from qadistill.student import build_encoder

    return build_encoder(student_recipe, registry, seed)


def _slim(state: dict | None) -> dict | None:
    if state is None:
        return None
    keep = ("step", "best_map", "best_step", "history", "train_seconds", "pairs_seen", "stopped_early", "pool_pairs", "seconds_per_pair")
    return {k: state[k] for k in keep if k in state}


def model_card(info: dict) -> str:
    p = info["pipeline"]
    d = p.get("distill", {})
    m = info["metrics"]
    teachers = p.get("teachers", [])
    base_models = []
    for t in info["teachers"]:
        src = t.get("source") or {}
        if src.get("type") == "hub":
            base_models.append(src["repo_id"])
    rows = "\n".join(
        f"| {spec} | {v['map']:.4f} | {v['mrr']:.4f} | {v['p@1']:.4f} | {v['auc']:.4f} | {v['queries']} |"
        for spec, v in m.items() if "map" in v
    )
    yaml = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        "- cross-encoder",
        "- reranker",
        "- knowledge-distillation",
        "- qadistill",
        "datasets:",
        "- microsoft/wiki_qa",
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
        "      name: WikiQA",
        "      type: microsoft/wiki_qa",
        "      split: test",
        "    metrics:",
        f"    - type: map\n      value: {m['test']['map']:.4f}",
        f"    - type: mrr\n      value: {m['test']['mrr']:.4f}",
        "---",
    ]
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

| data | MAP | MRR | P@1 | ROC-AUC | queries |
|---|---|---|---|---|---|
{rows}

MAP/MRR/P@1 count queries with at least one correct and one wrong candidate (the WikiQA convention).
Best dev MAP during training: {info['dev_map']:.4f}.

## How it was made

- teachers: {', '.join(teachers) or 'none'}; student init: `{json.dumps(info['student'].get('init'))}`
- mode {d.get('mode')}, epochs {d.get('epochs')}, batch {d.get('batch_size')}, lr {d.get('learning_rate')}, max length {d.get('max_length')},
  temperature {d.get('temperature')}, alpha {d.get('alpha')}, seed {d.get('seed')}, TMKD stage 1: {d.get('pretrain_unlabelled')}
- train pairs: {info['train_pairs']}; training {info['train_seconds']:.0f} s, teacher scoring {info['teacher_scoring_seconds']:.0f} s,
  {info['threads']} threads on {info['machine']}
- command: `{info['command']}`

The full recipe is in `recipe.toml`, every figure in `metrics.json`.

## Data licence

Trained on WikiQA (Microsoft Research Data License Agreement, research use).
"""
    return "\n".join(yaml) + "\n" + body
