"""`qadistill score`: teacher scoring as its own step, resumable by shard and data-parallel under a launcher.

The data is read as a stream (``qadistill.stream``) and cut into shards of ``shard_pairs`` consecutive pairs. Each
shard's raw scores go to the teacher's content-addressed shard store (``qadistill.scores``) — the store `distill` and
`eval` read — so after `score`, a `distill` with the same teachers and data scores nothing. Bi-encoders embed each
distinct text once across all shards (the embedding store) and write pair shards like cross-encoders.

Under `torchrun --nproc_per_node N` / `accelerate launch`, process r scores its contiguous share of the shards
(``parallel.share``) and writes their files; process 0 also hashes every shard (cheap next to scoring), waits until
every shard file is present and writes the manifest. An interrupted run (even SIGKILL) keeps every finished shard: run
it again and it scores only the rest, and the scores are the ones an uninterrupted run gives.

The manifest (``<out>/manifest.json``, written atomically) says what was scored: the data (source, pairs, sha256 of
its pairs), the shard size and, per teacher, its fingerprint, score space, calibration and shards in data order
(index, key, pairs, file, sha256 of the file). ``manifest_scores`` reads the raw scores back through it, checking each
file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qadistill import parallel, paths
from qadistill.errors import QadistillError, UserInputError
from qadistill.fsutil import atomic_write_text
from qadistill.progress import NullProgress, Progress
from qadistill.stream import PairStream

MANIFEST_FORMAT = "qadistill-scores/1"


@dataclass
class ScoreSummary:
    pairs: int  # pairs in the data
    shards: int  # shards per teacher
    teachers: list[str]
    seconds: float
    pairs_per_s: float  # data pairs through every teacher per second, all processes together
    scored: int  # pair scores computed now by this process (the rest were in the store)
    out: str  # the folder of the manifest
    manifest: str | None  # its path (None on processes other than 0)
    processes: int  # the processes of a launch, or the Ray workers
    engine: str = "local"  # local (this process, or the processes of a launch) | ray

    def to_dict(self) -> dict:
        return asdict(self)


def default_out(stream: PairStream) -> Path:
    """$QADISTILL_HOME/scores/<data name>[-<split>] for a named data set, <file stem>-<8 hex of its absolute path> for
    a file (two files of one name, in two folders, keep two manifests)."""
    if stream.format == "dataset":
        name = stream.name + (f"-{stream.split}" if stream.split else "")
    else:
        where = str(Path(stream.path or stream.spec).expanduser().resolve())
        name = f"{stream.name}-{hashlib.sha1(where.encode()).hexdigest()[:8]}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "data"
    return paths.home() / "scores" / safe


def run_score(teachers: list, stream: PairStream, out_dir: Path | None = None, shard_pairs: int | None = None,
              progress: Progress | None = None, ray=None) -> ScoreSummary:
    """Score every pair of ``stream`` with every teacher into the shard store and write the manifest (process 0).
    ``ray``: a ``qadistill.rayscore.RayOptions`` to score the shards on a Ray cluster instead of in this process (and
    its torchrun peers); the shards, their keys and the manifest are the same."""
    from qadistill.scores import shard_pairs_default

    if not teachers:
        raise UserInputError("no teachers to score with", "name at least one, e.g. `qadistill score minilm-l6-cross --data FILE`")
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise UserInputError(f"a teacher is named twice in {','.join(names)}", "name each teacher once")
    size = shard_pairs or shard_pairs_default()
    out = Path(out_dir) if out_dir else default_out(stream)
    from qadistill.fsutil import check_folder_path

    # the manifest goes in a folder: said now, not after hours of scoring
    check_folder_path(out, "--out", "pass a folder for the manifest (it is created if missing)")
    if ray is not None:
        from qadistill.rayscore import score_with_ray

        return score_with_ray(teachers, stream, out, size, progress or NullProgress(), ray)
    rank, nproc = parallel.world()
    progress = progress if (progress is not None and rank == 0) else NullProgress()
    t0 = time.perf_counter()
    with parallel.collective():
        n = stream.count()  # a validating pass: bad input fails before any model work
        cals = {t.name: calibration_entry(t, progress) for t in teachers}  # then a missing calibration split
        n_shards = math.ceil(n / size)
        mine = set(parallel.share(range(n_shards)))
        my_pairs = sum(min(size, n - i * size) for i in mine)
        records, data_sha, scored = _score_shards(teachers, stream, size, mine, rank == 0, progress, my_pairs)
        if rank != 0:
            return ScoreSummary(n, n_shards, names, time.perf_counter() - t0, 0.0, scored, str(out), None, nproc)
        for t in teachers:
            store = t.scores()
            missing = lambda: [r for r in records[t.name] if not store.has(r["key"])]  # noqa: E731
            parallel.wait_until(lambda: not missing(), f"the score shards of {t.name}")
    return write_manifest(teachers, stream, out, size, cals, records, data_sha, n, t0, scored, nproc, "local")


def write_manifest(teachers: list, stream: PairStream, out: Path, size: int, cals: dict, records: dict, data_sha: str,
                   n: int, t0: float, scored: int, nproc: int, engine: str) -> ScoreSummary:
    """Once every shard file is present: write ``<out>/manifest.json`` and sum the run up."""
    names = [t.name for t in teachers]
    read = sum(r["pairs"] for r in records[names[0]])
    if read != n:
        raise QadistillError(f"{stream.label} changed while it was scored ({n} pairs counted, {read} read)",
                             "run the command again on a file no one is writing")
    seconds = time.perf_counter() - t0
    manifest = {
        "format": MANIFEST_FORMAT,
        "data": {"source": str(stream.path or stream.spec), "name": stream.name, "split": stream.split, "format": stream.format,
                 "pairs": n, "sha256": data_sha},
        "shard_pairs": size,
        "teachers": [_teacher_entry(t, cals[t.name], records[t.name]) for t in teachers],
        "engine": engine, "processes": nproc, "seconds": round(seconds, 3), "created": time.time(),
    }
    path = out / "manifest.json"
    _merge_write(path, manifest)
    return ScoreSummary(n, len(records[names[0]]), names, seconds, n / seconds if seconds > 0 else 0.0, scored, str(out),
                        str(path), nproc, engine)


def data_shards(teachers: list, stream: PairStream, size: int, records: dict, data_sha, skip=lambda i: False):
    """The stream cut into shards of ``size`` consecutive pairs, in data order: (index, pair keys, queries, passages,
    {teacher: shard key}). Every shard not skipped is hashed into ``data_sha`` and recorded per teacher in ``records``
    (index, key, pairs) first. Both engines cut the data here, so their shards and keys are the same."""
    from qadistill.scores import content_sha, pair_keys

    for i, (qs, ps) in enumerate(stream.chunks(size)):
        if skip(i):
            continue
        keys = pair_keys(qs, ps)
        data_sha.update(content_sha(keys).encode())
        shard_keys = {t.name: t.scores().shard_key(keys) for t in teachers}
        for t in teachers:
            records[t.name].append({"index": i, "key": shard_keys[t.name], "pairs": len(qs)})
        yield i, keys, qs, ps, shard_keys


def _score_shards(teachers: list, stream: PairStream, size: int, mine: set, main: bool, progress: Progress, my_pairs: int):
    """Read the stream once; score this process's shards that the store lacks. Returns each teacher's shard records in
    data order and the data's sha256 (on the main process, which hashes every shard), and the pair scores computed."""
    for t in teachers:
        t.scores()._refresh()  # the pairs scored before this run (another cut of the data): copied, not rescored
    tasks = {t.name: progress.task(f"{t.name}: scoring {stream.label}", my_pairs) for t in teachers}
    records: dict[str, list] = {t.name: [] for t in teachers}
    data_sha = hashlib.sha256()
    scored = 0
    worked = {t.name: 0 for t in teachers}  # pairs each teacher scored now: the rate leaves out the shards reused
    t0 = time.perf_counter()
    for i, keys, qs, ps, shard_keys in data_shards(teachers, stream, size, records, data_sha, lambda i: i not in mine and not main):
        if i not in mine:
            continue
        for t in teachers:
            n = score_shard(t, shard_keys[t.name], keys, qs, ps)
            scored += n
            if not n:
                tasks[t.name].skip(len(qs))  # stored before (a resumed or repeated run): reused, not scored
                continue
            worked[t.name] += n
            rate = worked[t.name] / max(time.perf_counter() - t0, 1e-9)
            tasks[t.name].advance(len(qs), pairs_per_s=float(f"{rate:.4g}"))
    for task in tasks.values():
        task.done()
    return records, data_sha.hexdigest(), scored


def score_shard(teacher, key: str, keys, qs: list[str], ps: list[str]) -> int:
    """Score one shard into the teacher's store unless its file is there; returns the pairs scored (0 or all)."""
    store = teacher.scores()
    if store.read(key, keys) is not None:
        return 0
    store.write(key, keys, _shard_scores(teacher, store, keys, qs, ps))
    return len(qs)


def _shard_scores(teacher, store, keys, qs: list[str], ps: list[str]):
    """One shard's raw scores: every pair already in the space (another cut of the same data) is copied, else scored."""
    raw, found = store.lookup(keys, refresh=False)
    if found.all():
        return raw
    return teacher._score_shard(qs, ps)


def calibration_entry(teacher, progress: Progress):
    """The calibration the manifest records (fitting it first, which scores the calibration split, if need be)."""
    cal = teacher.calibration(progress)
    return None if cal is None else {"a": cal.a, "b": cal.b}


def _teacher_entry(t, cal, records: list[dict]) -> dict:
    store = t.scores()
    shards = [{**r, "file": str(store.path(r["key"])), "sha256": store.file_sha(r["key"])} for r in records]
    return {"name": t.name, "architecture": t.architecture, "fingerprint": t.fingerprint(), "max_length": t.max_length,
            "space": t.score_space(), "store": str(store.dir), "scores": "raw", "calibration": cal, "shards": shards}


def _merge_write(path: Path, manifest: dict) -> None:
    """Write the manifest; the entries of other teachers scored on the same data and shard size before are kept."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("format") == MANIFEST_FORMAT and old.get("data", {}).get("sha256") == manifest["data"]["sha256"] \
            and old.get("shard_pairs") == manifest["shard_pairs"]:
        now = {t["name"] for t in manifest["teachers"]}
        manifest["teachers"] = [t for t in old.get("teachers", []) if t.get("name") not in now] + manifest["teachers"]
    atomic_write_text(path, json.dumps(manifest, indent=1))


def read_manifest(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"{path}: no score manifest", "run `qadistill score TEACHER --data FILE` first") from None
    except ValueError:
        raise UserInputError(f"{path}: not a score manifest (invalid JSON)", "run `qadistill score` again to rewrite it") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise UserInputError(f"{path}: not a {MANIFEST_FORMAT} manifest", "run `qadistill score` again to rewrite it")
    return m


def manifest_scores(path: Path, teacher: str | None = None, calibrated: bool = False):
    """The scores a manifest describes, in data order: {teacher: float32 [pairs]} (raw, or with the recorded
    calibration applied). Each shard file must match the sha256 the manifest records."""
    import io

    import numpy as np

    m = read_manifest(path)
    out = {}
    for t in m["teachers"]:
        if teacher is not None and t["name"] != teacher:
            continue
        parts = []
        for s in t["shards"]:
            f = Path(s["file"])
            try:
                data = f.read_bytes()
            except FileNotFoundError:
                raise UserInputError(f"score shard {f} is missing", "run the same `qadistill score` command again") from None
            if hashlib.sha256(data).hexdigest() != s["sha256"]:
                raise UserInputError(f"score shard {f} does not match the manifest", "run the same `qadistill score` command again")
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                parts.append(z["raw"].astype(np.float32))
        raw = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        cal = t.get("calibration")
        out[t["name"]] = (cal["a"] * raw + cal["b"]).astype(np.float32) if calibrated and cal else raw
    return out
