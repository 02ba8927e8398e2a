"""`qadistill teach`: fine-tune a cross-encoder teacher on labelled pairs (gold BCE, one head), keeping the best
dev-MAP weights. Uses the same training loop as distillation (``qadistill.train``)."""

from __future__ import annotations

import json
import shutil
import copy
from dataclasses import dataclass, field
from pathlib import Path

from qadistill import paths
from qadistill.data import QADataset, load_dataset
from qadistill.errors import UserInputError
from qadistill.fsutil import atomic_write_text, check_replaceable, replace_dir
from qadistill.progress import Progress
from qadistill.recipes import TeacherRecipe, recipe_to_toml
from qadistill.train import TrainConfig, bucketed_batches, train, train_config  # noqa: F401  (bucketed_batches re-exported)


@dataclass
class FinetuneConfig(TrainConfig):
    """The training loop's settings (``TrainConfig``) with teach's defaults, plus the data and how it is filtered."""

    epochs: int = 2
    learning_rate: float = 3e-5
    batch_size: int = 16
    data: str = "wikiqa"
    train_split: str = "train"
    dev_split: str = "dev"
    train_filter: str = "with-positive"  # or "all": WikiQA practice trains on questions that have an answer
    limit_train_queries: int | None = None
    dev: str | None = None  # with a file as ``data``: the dev file; without one the file is split by query
    split_seed: int = 0
    # optional soft targets: the mean calibrated logit of these teachers on the same train pairs, learnt beside the gold
    # label (soft BCE at temperature T, gold BCE weighted by alpha) — a teacher that also absorbs other teachers
    distill_from: list[str] = field(default_factory=list)
    # cross-fitting (``qadistill.crossfit``): also train this many fold models, each without one fold of the training
    # queries, so the teacher scores its own training queries out of fold; 0: the full model only
    folds: int = 0

    def to_dict(self) -> dict:
        """The settings a teach run records (its run params and metrics.json), in their historical order."""
        return {k: getattr(self, k) for k in RECORDED}


# what a teach run records: the loop's own knobs that teach never sets (weight decay, clipping, ...) stay out
RECORDED = ("data", "train_split", "dev_split", "epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio", "seed",
            "eval_every", "patience", "checkpoint_every", "train_filter", "limit_train_queries", "dev", "split_seed",
            "distill_from", "alpha", "temperature", "folds")


def filter_train(ds: QADataset, how: str) -> QADataset:
    if how == "all":
        return ds
    groups = ds.query_groups()
    keep = {q for q, idx in groups.items() if any(ds.pairs[i].label == 1 for i in idx)}
    return QADataset(ds.name, ds.split, [p for p in ds.pairs if p.query_id in keep], ds.path)


def made_with(recipe: TeacherRecipe, cfg: FinetuneConfig) -> TeacherRecipe:
    """The recipe as built: its [finetune] table records the settings this teacher was fine-tuned with."""
    from qadistill.recipes import FinetuneSettings

    ft = FinetuneSettings(**{k: getattr(cfg, k) for k in FinetuneSettings.model_fields})
    return recipe.model_copy(update={"finetune": ft})


def has_checkpoint(work: Path) -> bool:
    """Whether a work folder holds a checkpoint to resume from (what a message may promise)."""
    return any(Path(work).rglob("checkpoint.pt"))


def resume_note(final: Path, resume: bool) -> str | None:
    """The note for a --resume that finds no checkpoint for the folder ``final`` (a fresh run starts: a job restarted
    with --resume every time works from its first start); it names the folder looked in, so a resume meant for
    another --out is seen before any training."""
    work = paths.work_path(final)
    if resume and not has_checkpoint(work):
        return f"note: no checkpoint to resume in {work}: starting a fresh run (a run interrupted elsewhere resumes with its own --out)"
    return None


def leftover_work(out_dir: Path) -> bool:
    """Whether ``out_dir``'s work folder is what a finished build left (a kill between putting the folder in place and
    deleting its checkpoints): the built folder's checksum record is newer than every checkpoint there. A rebuild
    (--overwrite) interrupted later has newer checkpoints: that one is an unfinished run."""
    from qadistill.integrity import MANIFEST

    built = out_dir / MANIFEST
    if not built.is_file():
        return False
    ckpts = list(paths.work_path(out_dir).rglob("checkpoint.pt"))
    return bool(ckpts) and all(c.stat().st_mtime <= built.stat().st_mtime for c in ckpts)


def work_dir_for(out_dir: Path, resume: bool) -> Path:
    """The temp folder of a run; refuses to silently discard an unfinished run (a finished build's leftover goes)."""
    work = paths.work_path(out_dir)
    if work.exists() and not resume:
        if has_checkpoint(work) and not leftover_work(out_dir):
            raise UserInputError(f"an unfinished run exists in {work}", "add --resume to continue it, or delete that folder to start over")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def _teach_data(cfg: FinetuneConfig) -> tuple:
    """(splits or None, filtered train set, dev set), checked before any model loads or work folder is made."""
    from qadistill.splits import is_named, require_labelled, resolve_splits

    splits = resolve_splits(cfg.data, cfg.train_split, cfg.dev_split, "test" if cfg.dev is None else cfg.dev_split,
                            dev=cfg.dev, test=cfg.dev, seed=cfg.split_seed) if not is_named(cfg.data) else None
    train_ds = splits.train if splits else load_dataset(cfg.data, cfg.train_split)
    if cfg.limit_train_queries:
        train_ds = train_ds.subset_queries(cfg.limit_train_queries)
    where = splits.label("train") if splits else f"{cfg.data}:{cfg.train_split}"
    require_labelled(train_ds, f"{where} (teach trains on gold labels)")
    if not any(p.label == 1 for p in train_ds.pairs):
        raise UserInputError(f"{where}: no training query has a correct answer ({len(train_ds)} pairs, every label 0)",
                             "give training data where some passages have label 1")
    return splits, filter_train(train_ds, cfg.train_filter), splits.dev if splits else load_dataset(cfg.data, cfg.dev_split)


def finetune_cross_encoder(
    recipe: TeacherRecipe,
    base_folder: Path,
    cfg: FinetuneConfig,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    soft_teachers: list | None = None,
    on_saved=None,
) -> dict:
    """Fine-tune ``base_folder`` as a one-logit cross-encoder; ``soft_teachers`` (scorers for ``cfg.distill_from``) add
    their mean logit as a soft target. ``on_saved(metrics)`` (e.g. registering it) runs once the folder is in place,
    with a Ctrl-C held until it returns; a Ctrl-C after that (the work folder's clean-up) raises a KeyboardInterrupt
    whose ``saved`` names the recipe: nothing is left to resume."""
    from transformers import AutoTokenizer

    from qadistill.crossfit import write_folds
    from qadistill.integrity import write_checksums

    if recipe.architecture != "cross-encoder":
        raise UserInputError(f"'{recipe.name}' is a {recipe.architecture}: `teach` fine-tunes cross-encoders", "pick a cross-encoder teacher recipe")
    out_dir = Path(out_dir) if out_dir else paths.artifacts_dir() / recipe.name
    check_replaceable(out_dir)
    splits, train_ds, dev = _teach_data(cfg)
    if cfg.folds:
        from qadistill.crossfit import assign_folds

        folds = assign_folds(train_ds, cfg.folds, cfg.split_seed)  # checked before any model loads
    work = work_dir_for(out_dir, resume)
    _same_settings(work, cfg, train_ds)
    tok = AutoTokenizer.from_pretrained(str(base_folder))
    targets = None
    if soft_teachers:
        from qadistill.teachers import teacher_targets
        from qadistill.progress import NullProgress

        targets = teacher_targets(soft_teachers, train_ds, "avg", progress or NullProgress())
    tcfg = train_config(cfg, alpha=cfg.alpha if targets is not None else 1.0)
    final_tmp = work / "final"
    if (final_tmp / "metrics.json").exists():  # the full model finished before an interruption (fold models pending)
        metrics = json.loads((final_tmp / "metrics.json").read_text())
    else:
        state = _fit(base_folder, tok, train_ds.pairs, targets, tcfg, cfg.seed, work, dev, resume, progress,
                     f"teach {recipe.name}", final_tmp)
        metrics = {
            "dev_map": state["best_map"], "best_step": state["best_step"], "steps": state["step"], "stopped_early": state["stopped_early"],
            "train_pairs": len(train_ds), "train_seconds": state["train_seconds"], "history": state["history"],
            "config": copy.deepcopy(cfg.to_dict()), "base": str(base_folder),
            "data_fingerprint": {"train": train_ds.fingerprint(), "dev": dev.fingerprint()},
            "splits": splits.info if splits else {"how": "named", "dataset": cfg.data},
        }
        atomic_write_text(final_tmp / "metrics.json", json.dumps(metrics, indent=2))
    if cfg.folds:
        metrics["folds"] = _train_folds(recipe.name, base_folder, tok, train_ds, targets, folds, tcfg, cfg.seed, work,
                                        final_tmp, resume, progress)
        write_folds(final_tmp, folds, cfg.split_seed)
        atomic_write_text(final_tmp / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(final_tmp / "recipe.toml", recipe_to_toml(made_with(recipe, cfg)))
    write_checksums(final_tmp)  # again, now that metrics.json and recipe.toml are there
    return _publish(final_tmp, out_dir, work, metrics, recipe.name, on_saved)


def _publish(final_tmp: Path, out_dir: Path, work: Path, metrics: dict, name: str, on_saved) -> dict:
    """Rename the finished folder into place and run ``on_saved`` as one step a Ctrl-C waits for, then remove the work
    folder (a Ctrl-C there raises with ``saved``: nothing is left to resume)."""
    from qadistill.interrupts import deferred

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    metrics["path"] = str(out_dir)
    with deferred() as interrupt:
        replace_dir(final_tmp, out_dir)
        if on_saved is not None:
            on_saved(metrics)
    try:
        interrupt.check()
        shutil.rmtree(work, ignore_errors=True)
    except KeyboardInterrupt as exc:
        exc.saved = name  # type: ignore[attr-defined]
        raise
    return metrics


def _fit(base_folder: Path, tok, pairs, targets, tcfg, seed: int, loop_dir: Path, dev: QADataset, resume: bool, progress,
         label: str, save_to: Path) -> dict:
    """One cross-encoder (the full model or a fold model): a one-logit model on ``base_folder``, seeded, trained on
    ``pairs`` with ``loop_dir`` for its checkpoints, the dev-best weights saved to ``save_to``; returns the run state."""
    import torch

    from qadistill.student import load_encoder, make_student_class, save_student

    torch.manual_seed(seed)
    model = make_student_class()(load_encoder(base_folder), n_heads=1)
    state = train(model, tok, pairs, targets, tcfg, loop_dir, dev=dev, resume=resume, progress=progress, label=label)
    save_student(model, tok, save_to)
    return state


def _same_settings(work: Path, cfg: FinetuneConfig, train_ds: QADataset) -> None:
    """Record the run's settings and training data in its work folder; a resume with others (another --folds, epochs,
    data, ...) is refused before any work, so finished models of one run never mix with another's."""
    path = work / "teach.json"
    now = {"config": cfg.to_dict(), "train": train_ds.fingerprint()}
    if path.exists():
        was = json.loads(path.read_text())
        a, b = {**was["config"], "training data": was["train"]}, {**now["config"], "training data": now["train"]}
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if changed:
            raise UserInputError(f"the unfinished run in {work} was made with other settings ({', '.join(changed[:4])})",
                                 f"resume with the same options, or delete {work} to start over")
    atomic_write_text(path, json.dumps(now))


def _train_folds(name: str, base_folder: Path, tok, train_ds: QADataset, targets, folds: list[QADataset], tcfg, seed: int,
                 work: Path, final_tmp: Path, resume: bool, progress) -> dict:
    """Fold model k: trained like the full model on every training query but fold k's, early-stopped on fold k (its
    held-out MAP), saved to ``final_tmp``/folds/fold-k. A fold saved before an interruption is kept as it is."""
    from qadistill.crossfit import FOLDS_DIR

    out = []
    for k, held in enumerate(folds):
        fdir = final_tmp / FOLDS_DIR / f"fold-{k}"
        if not (fdir / "metrics.json").exists():
            held_q = {p.query for p in held.pairs}
            idx = [i for i, p in enumerate(train_ds.pairs) if p.query not in held_q]
            state = _fit(base_folder, tok, [train_ds.pairs[i] for i in idx], None if targets is None else targets[idx], tcfg,
                         seed, work / f"fold-{k}", held, resume, progress, f"teach {name}: fold {k + 1}/{len(folds)}", fdir)
            m = {"held_out_map": state["best_map"], "best_step": state["best_step"], "steps": state["step"],
                 "train_pairs": len(idx), "held_out_pairs": len(held), "train_seconds": state["train_seconds"]}
            atomic_write_text(fdir / "metrics.json", json.dumps(m, indent=2))
        out.append(json.loads((fdir / "metrics.json").read_text()))
    maps = [m["held_out_map"] for m in out if m["held_out_map"] is not None and m["held_out_map"] >= 0]
    return {"k": len(folds), "held_out_map": [m["held_out_map"] for m in out],
            "held_out_map_mean": sum(maps) / len(maps) if maps else None, "fold": out}


def teach_folder(recipe: str, out_dir: Path | None = None) -> Path:
    """The folder `teach` builds: ``--out``, else the teacher's name under the artifacts."""
    return Path(out_dir) if out_dir else paths.artifacts_dir() / recipe


def run_teach(store, r: TeacherRecipe, base_folder: Path, cfg: FinetuneConfig, out_dir: Path | None = None,
              resume: bool = False, soft_teachers: list | None = None, progress: Progress | None = None,
              command: str | None = None) -> dict:
    """`qadistill teach` as one core call: under the teacher's artifact lock, a run in the store, the fine-tuning, then
    its dev result and the teacher-model artifact registered; the run ends ok, failed or interrupted whatever happens.
    Returns the fine-tuning's metrics (``dev_map`` None when no dev query was scorable). A ``progress`` that is a
    context manager (the CLI's bars) is entered for the fine-tuning only, once the lock is held and the run started."""
    import contextlib
    import time

    from qadistill.errors import InterruptedRunError
    from qadistill.locks import artifact_lock

    recipe = r.name
    with artifact_lock(recipe, "teacher"):
        _check_out(store, recipe, out_dir)
        started_at = time.time()
        run_id = store.start_run("teach", recipe=recipe, params=cfg.to_dict())
        try:
            bars = progress if hasattr(progress, "__enter__") else contextlib.nullcontext(progress)
            with bars as prog:
                m = finetune_cross_encoder(r, base_folder, cfg, out_dir=out_dir, resume=resume, progress=prog,
                                           soft_teachers=soft_teachers or [],
                                           on_saved=lambda m: _register_teacher(store, r, cfg, m, run_id, started_at))
            store.finish_run(run_id, "ok")
        except KeyboardInterrupt as exc:
            if getattr(exc, "saved", None):  # only the work folder's clean-up was cut short
                store.finish_run(run_id, "ok")
                raise InterruptedRunError(f"interrupted after teacher '{recipe}' was saved and registered: nothing to resume",
                                          f"see it with `qadistill zoo show {recipe}`", exc) from None
            store.end_run_quietly(run_id, "interrupted")
            again = f"`{command}`" if command else "the same command"  # with its --data, --out and every option
            if has_checkpoint(paths.work_path(teach_folder(recipe, out_dir))):  # what the message can promise
                resume_cmd = (f"`{command}`" if "--resume" in command.split() else f"`{command} --resume`") if command else "the same command plus --resume"
                raise InterruptedRunError("interrupted: a checkpoint was saved", f"continue with {resume_cmd}", exc) from None
            raise InterruptedRunError("interrupted before training saved a checkpoint: finished teacher scores are cached",
                                      f"run {again} again (the scores computed so far are reused)", exc) from None
        except BaseException:
            store.end_run_quietly(run_id, "failed")
            raise
    return m


def _check_out(store, name: str, out_dir: Path | None) -> None:
    """``--out`` elsewhere than the registered build of ``name`` would make that folder the zoo's ``name`` and drop the
    dev figures of the build in use: refused before any work (a rebuild in place, or a resume of the same folder, is fine)."""
    from qadistill.registry import Registry

    if out_dir is None:
        return
    built = Registry(store=store).teacher_build(name)
    if built is not None and built.resolve() != Path(out_dir).resolve():
        raise UserInputError(f"teacher '{name}' is already built at {built}: --out {out_dir} would make that folder the "
                             f"zoo's '{name}' and drop the figures of the build in use",
                             f"omit --out to rebuild '{name}' in place, or teach a copy of the recipe under another name "
                             f"(`qadistill zoo show {name}`, then `qadistill zoo add FILE`)")


def _register_teacher(store, r: TeacherRecipe, cfg: FinetuneConfig, m: dict, run_id, started_at: float) -> None:
    """A taught teacher's dev result (replacing the figures of any earlier one) and its teacher-model artifact."""
    if m["dev_map"] is not None and m["dev_map"] < 0:
        m["dev_map"] = None  # no scorable dev query: undefined, never -1
    dev_label = (m.get("splits") or {}).get("dataset", cfg.data)
    store.drop_stale_results(r.name, started_at)  # a re-taught teacher never shows the old one's figures
    store.add_results(r.name, dev_label, "dev", {"map": m["dev_map"]}, run_id=run_id)
    store.add_artifact(r.name, "teacher-model", m["path"], recipe=r.name, run_id=run_id,
                       manifest={"max_length": cfg.max_length, "parameters": r.parameters, "dev_map": m["dev_map"]})
