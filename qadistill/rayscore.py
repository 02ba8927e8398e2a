"""`qadistill score --engine ray`: the shards of `score` scored by a pool of Ray actors, as a Ray Data pipeline.

Where the pairs are read: in the driver, which reads the stream once and cuts it with ``scoring.data_shards``, the
function the local engine cuts with, so the shards, their keys and the manifest are the same by construction, for every
format (gzip, Parquet and the named data sets cannot be entered at a byte offset by a worker, and a worker that read a
line range itself would have to count rows exactly as ``PairStream`` does). Each shard the store lacks becomes one
Arrow block in Ray's object store (spilled to disk when it fills; texts as UTF-8 bytes, so any Python string makes the
trip unchanged); the driver keeps only the references. Right on one node and fine on a few, where reading and hashing
the pairs costs a small fraction of scoring them; on many nodes the driver's read would be the next bottleneck.

The pipeline: shards as rows -> ``map_batches(ShardScorer, batch_size=1)`` on an actor pool of ``workers`` actors (a
GPU each when the cluster has GPUs). Each actor builds its teachers once, from their recipes (the weights resolved on
its own node, never pickled models), checks that each is the teacher the driver named (the same score space), and
writes every shard it scores into the same content-addressed store as the local engine: the store, under
QADISTILL_HOME, must be on a file system every node sees at the same path. A shard already in the store is not sent, so
after a kill a rerun sends only the rest; the driver writes the manifest once every shard file is present.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from qadistill.errors import QadistillError, UserInputError
from qadistill.progress import Progress
from qadistill.scoring import ScoreSummary, calibration_entry, data_shards, score_shard, write_manifest
from qadistill.stream import PairStream

INSTALL_HINT = "pip install 'qadistill[ray]' (or use --engine local)"
CONNECT_HINT = "start one (`ray start --head`) and pass its address (--ray-address HOST:PORT, or RAY_ADDRESS)"
RETRY_HINT = "every finished shard is kept: fix the cause, then run the same command again"


@dataclass(frozen=True)
class RayOptions:
    """How `score --engine ray` runs.

    recipes     the teachers' recipes, in the order of the teachers: each actor builds its teachers from them
    batch_size  pairs (or texts) per forward pass
    workers     actors (None: one per GPU of the cluster when it has GPUs, else one per CPU)
    address     the cluster to join (None: RAY_ADDRESS, else a local cluster started for the run and stopped after it)
    device      cpu | cuda (None: a GPU per actor when the cluster has GPUs, else the CPU)
    """

    recipes: tuple
    batch_size: int = 32
    workers: int | None = None
    address: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class Plan:
    """What the actor pool asks of the cluster."""

    workers: int
    num_cpus: int  # per actor (on a CPU, its torch threads: Ray sets OMP_NUM_THREADS to it)
    num_gpus: int  # per actor: 1 or 0
    device: str


def require_ray():
    """Ray with Ray Data, or a one-line error naming the extra (before any model loads)."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray[data]: pyarrow, pandas)
    except ImportError as exc:  # (a folder named ray in the working directory imports as an empty namespace package)
        part = "" if (exc.name or "ray").split(".")[0] == "ray" else f" (its dependency {exc.name} is missing)"
        from qadistill.errors import MissingPackageError

        raise MissingPackageError(f"--engine ray needs ray[data], which is not installed{part}", INSTALL_HINT) from None
    return ray


def check_launch() -> None:
    """Ray starts its own workers: under torchrun every process would start another pool."""
    from qadistill import parallel

    if parallel._launched():
        raise UserInputError("--engine ray under torchrun / accelerate launch: every process would start its own Ray pool",
                             "run it as one process (qadistill score ... --engine ray --workers N)")


def check_address(address: str | None) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that nothing answers on -> one line now: ray.init would retry for minutes.
    ``None``: RAY_ADDRESS, if set. "auto" and the like are left to ray.init, which fails at once when nothing runs."""
    import socket

    address = address or os.environ.get("RAY_ADDRESS") or None
    host, sep, port = (address or "").split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise UserInputError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})", CONNECT_HINT) from None


def plan(resources: dict, workers: int | None, device: str | None, where: str) -> Plan:
    """Actors and their resources on a cluster with ``resources`` (ray.cluster_resources()); too many -> one line."""
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    if device == "cuda" and gpus == 0:
        raise UserInputError(f"--device cuda: the Ray cluster ({where}) has no GPU", "use --device cpu, or a cluster with GPUs")
    on_gpu = gpus > 0 and device != "cpu"
    have, unit = (gpus, "GPU") if on_gpu else (cpus, "CPU")
    n = workers or have
    if have < 1:
        raise UserInputError(f"the Ray cluster ({where}) has no CPU to run a worker on", "add a node with CPUs, or use --engine local")
    if n > have:
        raise UserInputError(f"--workers {n}: the Ray cluster ({where}) has {have} {unit}s (one actor needs one)",
                             f"use --workers {have} or less, or add nodes to the cluster")
    return Plan(n, max(1, cpus // n), 1 if on_gpu else 0, "cuda" if on_gpu else "cpu")


class _Cluster:
    """The Ray connection, opened at the first shard that needs scoring (a rerun that finds every shard starts none)."""

    def __init__(self, ray, opts: RayOptions) -> None:
        self.ray, self.opts = ray, opts
        self.started = False  # whether this run started Ray (and stops it)
        self.plan: Plan | None = None

    def put(self, table):
        if self.plan is None:
            self._connect()
        return self.ray.put(table)

    def _connect(self) -> None:
        import logging

        ray, address = self.ray, self.opts.address or os.environ.get("RAY_ADDRESS") or None
        quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
        where = address or "a local cluster started for this run"
        try:
            if ray.is_initialized():
                where = "the Ray session this process has"
            elif address:
                ray.init(address=address, **quiet)
            else:
                self.started = True
                # "local": always a new cluster, never one `ray start` left running (or its stale address file)
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, self.opts.workers or 1), include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            auth = address and "RAY_AUTH_MODE" not in os.environ  # Ray sends its token to an explicit address only when told
            raise UserInputError(f"cannot reach the Ray cluster at {address} ({why})",
                                 "if the cluster uses token authentication (`ray start`'s default), set RAY_AUTH_MODE=token"
                                 if auth else CONNECT_HINT) from None
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours show it
        self.plan = plan(ray.cluster_resources(), self.opts.workers, self.opts.device, where)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def score_with_ray(teachers: list, stream: PairStream, out: Path, size: int, progress: Progress, opts: RayOptions) -> ScoreSummary:
    """``scoring.run_score`` on a Ray actor pool: the same shards, store and manifest as the local engine."""
    ray = require_ray()
    check_launch()
    check_address(opts.address)
    if [r.name for r in opts.recipes] != [t.name for t in teachers]:
        raise QadistillError("RayOptions.recipes must be the recipes of the teachers, in their order", "pass both from the same list")
    t0 = time.perf_counter()
    cluster = _Cluster(ray, opts)
    records: dict[str, list] = {t.name: [] for t in teachers}
    data_sha = hashlib.sha256()
    try:
        jobs, todo = _calibration_jobs(teachers, cluster)  # first: a missing calibration split fails now
        n = stream.count()
        for i, keys, qs, ps, shard_keys in data_shards(teachers, stream, size, records, data_sha):
            names = [t.name for t in teachers if t.scores().read(shard_keys[t.name], keys) is None]  # (a bad file is deleted)
            if names:
                jobs.append(cluster.put(_block(i, True, names, qs, ps)))
                for name in names:
                    todo[(name, True)] = todo.get((name, True), 0) + len(qs)
        scored = _run(cluster, jobs, teachers, opts, progress, todo, stream.label) if jobs else 0
        cals = {t.name: calibration_entry(t, progress) for t in teachers}  # the calibration split is in the store now
    finally:
        cluster.close()
    for t in teachers:
        lost = [r["index"] for r in records[t.name] if not t.scores().has(r["key"])]
        if lost:
            raise QadistillError(f"the Ray workers finished but {len(lost)} score shard(s) of {t.name} are not in "
                                 f"{t.scores().dir} (first: shard {lost[0]})",
                                 "put QADISTILL_HOME on a file system every node of the cluster sees, then run again")
    workers = cluster.plan.workers if cluster.plan else 0
    return write_manifest(teachers, stream, out, size, cals, records, data_sha.hexdigest(), n, t0, scored, workers, "ray")


def _calibration_jobs(teachers: list, cluster: _Cluster) -> tuple[list, dict]:
    """The shards of each calibration split still to score (cut as ``Teacher.pair_scores`` cuts them, so the fit after
    the pipeline reads them all from the store), and the pairs per (teacher, False)."""
    from qadistill.scores import pair_keys, shard_pairs_default

    jobs, todo = [], {}
    for t in teachers:
        ds = t.calibration_data()
        if ds is None:
            continue
        qs, ps = [p.query for p in ds.pairs], [p.passage for p in ds.pairs]
        for s in t.scores().shards(pair_keys(qs, ps), shard_pairs_default()):
            if t.scores().read(s.key, s.keys) is None:
                jobs.append(cluster.put(_block(s.index, False, [t.name], qs[s.start : s.stop], ps[s.start : s.stop])))
                todo[(t.name, False)] = todo.get((t.name, False), 0) + s.pairs
    return jobs, todo


def _block(index: int, data: bool, teachers: list[str], qs: list[str], ps: list[str]):
    """One shard as a one-row Arrow table: its index, whether it is of the data (else a calibration split), the
    teachers that lack it, and its texts as UTF-8 bytes (surrogatepass, as the pair keys hash them)."""
    import pyarrow as pa

    enc = lambda xs: [x.encode("utf-8", "surrogatepass") for x in xs]  # noqa: E731
    return pa.table({"index": [index], "data": [data], "teachers": [teachers], "queries": [enc(qs)], "passages": [enc(ps)]},
                    schema=_schema())


def _schema():
    import pyarrow as pa

    return pa.schema([("index", pa.int64()), ("data", pa.bool_()), ("teachers", pa.list_(pa.string())),
                      ("queries", pa.list_(pa.binary())), ("passages", pa.list_(pa.binary()))])


def _run(cluster: _Cluster, jobs: list, teachers: list, opts: RayOptions, progress: Progress, todo: dict, label: str) -> int:
    """Run the pipeline over the shard blocks; returns the data pairs scored (per teacher, summed)."""
    import ray.data

    from qadistill import paths

    p = cluster.plan
    ray.data.DataContext.get_current().enable_progress_bars = False  # the driver's own progress shows it
    spaces = [t.score_space() for t in teachers]
    ds = ray.data.from_arrow_refs(jobs).map_batches(
        ShardScorer, batch_size=1, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=p.workers),
        num_cpus=p.num_cpus, num_gpus=p.num_gpus,
        fn_constructor_kwargs={"recipes": list(opts.recipes), "spaces": spaces, "batch_size": opts.batch_size,
                               "device": p.device, "home": str(paths.home())})
    tasks = {k: progress.task(f"{k[0]}: scoring {label if k[1] else 'its calibration split'} ({p.workers} Ray workers)", v)
             for k, v in todo.items()}
    scored = 0
    try:
        for row in ds.iter_rows():
            tasks[(row["teacher"], row["data"])].advance(row["pairs"])
            scored += row["scored"] if row["data"] else 0
    except (KeyboardInterrupt, QadistillError):
        raise
    except Exception as exc:  # a worker's error arrives wrapped (RayTaskError, UserCodeException)
        raise _worker_error(exc) from None
    for task in tasks.values():
        task.done()
    return scored


def _worker_error(exc: BaseException) -> QadistillError:
    """The qadistill error a Ray worker raised (its one-line message), else the worker's last line."""
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, QadistillError):
            return e
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    last = [ln for ln in str(exc).splitlines() if ln.strip()]
    return QadistillError(f"a Ray worker failed: {last[-1].strip() if last else type(exc).__name__}", RETRY_HINT)


class ShardScorer:
    """One actor of the pool: builds its teachers once, then scores each shard it is handed into the shared store."""

    def __init__(self, recipes: list, spaces: list[str], batch_size: int, device: str, home: str) -> None:
        import platform

        os.environ["QADISTILL_HOME"] = home  # the driver's store (a shared file system across nodes)
        from qadistill.teachers import teacher_from_recipe

        reg = None
        if any(r.source is None for r in recipes):  # a teacher built by `qadistill teach`: its folder is in the registry
            from qadistill.registry import Registry
            from qadistill.store import Store

            reg = Registry(store=Store.open())
        self.teachers = {}
        for r, space in zip(recipes, spaces):
            t = teacher_from_recipe(r, reg, batch_size)
            t.device = device
            if t.score_space() != space:
                raise QadistillError(f"teacher '{r.name}' has other weights on Ray node {platform.node()} than on the driver",
                                     "install the same model (package or folder) on every node")
            t.scores()._refresh()  # pairs scored before (another cut of the data) are copied, not rescored
            self.teachers[r.name] = t

    def __call__(self, batch) -> dict:
        """One shard (a one-row table) -> one row per teacher that lacked it: index, data, teacher, pairs, scored."""
        from qadistill.scores import pair_keys

        row = batch.to_pylist()[0]
        qs = [b.decode("utf-8", "surrogatepass") for b in row["queries"]]
        ps = [b.decode("utf-8", "surrogatepass") for b in row["passages"]]
        keys = pair_keys(qs, ps)
        out: dict[str, list] = {"index": [], "data": [], "teacher": [], "pairs": [], "scored": []}
        for name in row["teachers"]:
            t = self.teachers[name]
            n = score_shard(t, t.scores().shard_key(keys), keys, qs, ps)
            for k, v in (("index", row["index"]), ("data", row["data"]), ("teacher", name), ("pairs", len(qs)), ("scored", n)):
                out[k].append(v)
        return out
