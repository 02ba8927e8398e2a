"""The SQLite store of runs, built artifacts and results (stdlib sqlite3).

Migrations are append-only and named: a database created by an older qadistill is brought forward on open, in one
``BEGIN IMMEDIATE`` transaction, so two processes opening the same home at once cannot both apply a migration. The
database runs in WAL mode with a busy timeout, so concurrent writers wait for each other instead of failing.
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from qadistill import paths
from qadistill.errors import StoreError

def _defined(value: object) -> float | None:
    """``value`` as a float, or None when it is undefined (None, NaN, inf)."""
    if value is None:
        return None
    f = float(value)  # type: ignore[arg-type]
    return f if math.isfinite(f) else None


def _process_alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` on this host is alive and began by ``since`` (a pid reused later is not the run's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    except OSError:
        return True  # cannot tell (an invalid pid on this platform): never mark a live run interrupted
    started = _process_start(pid)
    return started is None or started <= since + 2.0


def _process_start(pid: int) -> float | None:
    """When a process began (epoch seconds), from /proc on Linux; +inf for a zombie; None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(x.split()[1]) for x in Path("/proc/stat").read_text().splitlines() if x.startswith("btime "))
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            return math.inf
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _is_permission_problem(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "readonly" in msg or "read-only" in msg or "unable to open" in msg or "permission" in msg


# (name, SQL). Never edit or reorder an entry that has shipped: append a new one.
# the columns that say what a result is, as 0003 made them (0006 rebuilds the table around them)
_RESULT_KEY = """            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT REFERENCES runs(id),
            artifact TEXT NOT NULL,
            dataset TEXT NOT NULL,
            split TEXT NOT NULL,
            metric TEXT NOT NULL,"""

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_runs",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            recipe TEXT,
            status TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            params TEXT NOT NULL DEFAULT '{}'
        );
        """,
    ),
    (
        "0002_artifacts",
        """
        CREATE TABLE artifacts (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            recipe TEXT,
            path TEXT NOT NULL,
            parent TEXT,
            run_id TEXT REFERENCES runs(id),
            created_at REAL NOT NULL,
            manifest TEXT NOT NULL DEFAULT '{}'
        );
        """,
    ),
    (
        "0003_results",
        f"""
        CREATE TABLE results (
{_RESULT_KEY}
            value REAL NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX results_artifact ON results(artifact, metric);
        """,
    ),
    (
        "0004_runs_env",
        "ALTER TABLE runs ADD COLUMN env TEXT NOT NULL DEFAULT '{}';",
    ),
    (
        "0005_bench",
        """
        CREATE TABLE bench_runs (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            env TEXT NOT NULL,
            settings TEXT NOT NULL
        );
        CREATE TABLE bench_rows (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES bench_runs(id),
            row TEXT NOT NULL
        );
        """,
    ),
    (
        # an undefined metric (e.g. MAP with no query holding both a correct and a wrong candidate) is NULL with the
        # reason in `note`; SQLite cannot drop NOT NULL in place, so the table is rebuilt with its rows and ids
        "0006_results_nullable",
        f"""
        CREATE TABLE results_0006 (
{_RESULT_KEY}
            value REAL,
            note TEXT,
            created_at REAL NOT NULL,
            CHECK (value IS NOT NULL OR note IS NOT NULL)
        );
        INSERT INTO results_0006(id, run_id, artifact, dataset, split, metric, value, created_at)
            SELECT id, run_id, artifact, dataset, split, metric, value, created_at FROM results;
        DROP TABLE results;
        ALTER TABLE results_0006 RENAME TO results;
        CREATE INDEX results_artifact ON results(artifact, metric);
        """,
    ),
    (
        # who runs a run (so a run whose process died is swept to "interrupted") and why a run ended
        "0007_runs_owner",
        """
        ALTER TABLE runs ADD COLUMN pid INTEGER;
        ALTER TABLE runs ADD COLUMN hostname TEXT;
        ALTER TABLE runs ADD COLUMN reason TEXT;
        """,
    ),
]

RUN_ENDS = ("ok", "failed", "interrupted")  # how a run ends; it is "running" until then


@dataclass(frozen=True)
class Artifact:
    name: str
    kind: str
    recipe: str | None
    path: str
    parent: str | None
    run_id: str | None
    created_at: float
    manifest: dict


SQLITE_MAGIC = b"SQLite format 3\x00"


def _statements(sql: str) -> list[str]:
    """A migration's SQL statements (split on ';', blanks dropped)."""
    return [x.strip() for x in sql.split(";") if x.strip()]


@functools.lru_cache(maxsize=1)
def expected_columns() -> dict[str, set[str]]:
    """Table -> its columns, as MIGRATIONS make them (applied to an empty in-memory database once per process)."""
    conn = sqlite3.connect(":memory:")
    try:
        for _, sql in MIGRATIONS:
            for stmt in _statements(sql):
                conn.execute(stmt)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    finally:
        conn.close()


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class Store:
    """A handle on the store; open one per process (``Store.open()``), use it as a context manager or close it.

    An existing file that is empty or not a SQLite database is refused (``StoreError``), never replaced by an empty
    store; a new store is created under a temp name and linked into place, so no other process sees it half made.
    """

    def __init__(self, path: Path, home: Path | None = None) -> None:
        self.path = Path(path)
        # artifact folders under this home are stored relative to it (QADISTILL_HOME when the store is opened)
        self.home = Path(home).expanduser() if home else paths.home()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check_file()
            if not self.path.exists():
                self._create()
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._identity = _file_identity(self.path)  # the file written to: a delete or replace under a run is seen
        except PermissionError as exc:
            raise self._permission_error(f"permission denied ({exc.filename or self.path})") from None
        except sqlite3.OperationalError as exc:
            raise self._permission_error(str(exc)) from None
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA busy_timeout=30000")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.migrate()
            self._check_schema()
            self._sweep_if_writable()
        except sqlite3.OperationalError as exc:
            self.conn.close()
            if _is_permission_problem(exc):
                raise self._permission_error(str(exc)) from None
            raise self._unreadable(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise self._unreadable(str(exc)) from None
        except BaseException:
            self.conn.close()
            raise

    def _check_schema(self) -> None:
        """Every table the migrations make has every column they give it (a store edited by hand, or by another
        program, failed later on a missing column as an internal error)."""
        want = expected_columns()
        for table, cols in want.items():
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            missing = sorted(cols - have)
            if missing:
                raise self._unreadable(f"its table {table} lacks the column(s) {', '.join(missing)}: not the schema this "
                                       "qadistill writes (edited by hand, or by another program)")

    def _sweep_if_writable(self) -> None:
        try:
            self.sweep_stale_runs()
        except StoreError:
            pass  # a read-only store can still be read; the sweep happens on the next writable open

    # -- opening safely -------------------------------------------------------------------------------------------------
    def _check_file(self) -> None:
        """Refuse an existing file that is empty or does not start with the SQLite header."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
        if not head:
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                return  # everything is still in the write-ahead log: SQLite recovers it
            raise self._unreadable("the file is empty (0 bytes), not a SQLite database")
        if head != SQLITE_MAGIC:
            raise self._unreadable("not a SQLite database")

    def _create(self) -> None:
        """Create a new store under a temp name, then link it into place (a no-op when another process won)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.new")
        try:
            conn = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)

    def backups(self) -> list[Path]:
        """Backups of this store written before migrations, oldest first."""
        found = self.path.parent.glob(self.path.name + ".bak-before-*")
        return sorted((p for p in found if not p.name.endswith(".tmp")), key=lambda p: p.stat().st_mtime)

    def _unreadable(self, problem: str) -> StoreError:
        backups = self.backups() if self.path.parent.is_dir() else []
        keep = f"{self.path}.damaged" if backups else f"{self.path}.bak"
        if backups:
            hint = f"keep it and restore the latest backup: mv {self.path} {keep} && cp {backups[-1]} {self.path}"
        else:
            hint = f"move it aside (mv {self.path} {keep}) and run the command again: a new store is started, the old file stays in {keep}"
        return StoreError(f"store {self.path} is unreadable: {problem}", hint)

    def _permission_error(self, problem: str) -> StoreError:
        what = "read-only" if "readonly" in problem or "read-only" in problem else "not accessible"
        return StoreError(
            f"store {self.path} is {what}: {problem}",
            f"check the permissions of {self.path} and of its folder (ls -l {self.path.parent}), "
            "or set QADISTILL_HOME to a folder you can write",
        )

    @classmethod
    def open(cls, path: Path | None = None) -> "Store":
        return cls(path or paths.store_path())

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a read-only store raises ``StoreError`` with a permissions hint, and one deleted or
        replaced since it was opened raises before writing (the write would go to the deleted file, lost on close:
        a build reported as saved and registered that the zoo never knew)."""
        if _file_identity(self.path) != getattr(self, "_identity", None):
            raise StoreError(f"the store {self.path} was deleted or replaced while this command ran, so nothing more could "
                             "be recorded in it", "rerun the same command (with --resume where it says a run is unfinished: "
                             "its checkpoints are kept); restore the store from a backup to keep its history")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if _is_permission_problem(exc):
                raise self._permission_error(str(exc)) from None
            raise

    # -- migrations -----------------------------------------------------------------------------------------------------
    def applied_migrations(self) -> list[str]:
        self.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        return [r[0] for r in self.conn.execute("SELECT name FROM _migrations ORDER BY name")]

    def migrate(self) -> list[str]:
        """Apply the migrations this database lacks; returns their names."""
        known = [m[0] for m in MIGRATIONS]
        with self.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            done = {r[0] for r in c.execute("SELECT name FROM _migrations")}
            newer = sorted(done - set(known))
            if newer:
                raise StoreError(
                    f"store {self.path} was written by a newer qadistill (migration {newer[-1]})",
                    "upgrade qadistill: pip install -U qadistill",
                )
            pending = [name for name, _ in MIGRATIONS if name not in done]
            if pending and done:  # a store that already holds data: keep a copy of it as it was
                self._backup(self.path.with_name(f"{self.path.name}.bak-before-{pending[0]}"))
            applied = []
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                for stmt in _statements(sql):
                    c.execute(stmt)
                c.execute("INSERT INTO _migrations(name, applied_at) VALUES (?, ?)", (name, time.time()))
                applied.append(name)
        return applied

    def _backup(self, dest: Path) -> None:
        """Copy the database to ``dest`` with SQLite's backup API (a consistent snapshot), atomically: a temp file in
        the same folder, fsynced, renamed into place. Called inside the migration's write transaction, so no other
        process changes the database meanwhile; the copy is read through a second connection (WAL readers never wait)."""
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            src = sqlite3.connect(str(self.path), timeout=30.0)
            dst = sqlite3.connect(str(tmp))
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    # -- runs -----------------------------------------------------------------------------------------------------------
    def start_run(self, command: str, recipe: str | None = None, params: dict | None = None, env: dict | None = None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self.transaction() as c:
            c.execute(
                "INSERT INTO runs(id, command, recipe, status, started_at, params, env, pid, hostname) VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, command, recipe, "running", time.time(), json.dumps(params or {}), json.dumps(env or {}),
                 os.getpid(), socket.gethostname()),
            )
        return run_id

    def finish_run(self, run_id: str, status: str = "ok", reason: str | None = None) -> None:
        if status not in RUN_ENDS:
            raise ValueError(f"run status {status!r} is not one of {', '.join(RUN_ENDS)}")
        with self.transaction() as c:
            c.execute("UPDATE runs SET status=?, finished_at=?, reason=? WHERE id=?", (status, time.time(), reason, run_id))

    def end_run_quietly(self, run_id: str | None, status: str) -> None:
        """Record how a run that is failing or interrupted ended, never hiding why: a store that cannot be written then
        (its disk full) leaves the run's row "running" (swept as interrupted later) and the error in flight is the one
        reported."""
        if run_id:
            try:
                self.finish_run(run_id, status)
            except Exception:  # noqa: BLE001  (the error in flight explains the failure; this one would mask it)
                pass

    def fail_run(self, run_id: str, reason: str) -> None:
        self.finish_run(run_id, "failed", reason)

    def sweep_stale_runs(self) -> list[str]:
        """Mark "interrupted" every "running" run of this host whose process is gone (or whose pid now belongs to a
        later process); returns their ids. Runs of other hosts and runs without a pid are left alone."""
        host = socket.gethostname()
        rows = self.conn.execute(
            "SELECT id, pid, started_at FROM runs WHERE status='running' AND hostname=? AND pid IS NOT NULL", (host,)
        ).fetchall()
        stale = [r for r in rows if not _process_alive(r["pid"], r["started_at"])]
        if not stale:
            return []
        with self.transaction() as c:
            for r in stale:
                c.execute(
                    "UPDATE runs SET status='interrupted', finished_at=?, reason=? WHERE id=? AND status='running'",
                    (time.time(), f"process {r['pid']} on {host} ended without finishing the run", r["id"]),
                )
        return [r["id"] for r in stale]

    def runs(self, limit: int = 50) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) | {"params": json.loads(r["params"]), "env": json.loads(r["env"])} for r in rows]

    # -- artifacts ------------------------------------------------------------------------------------------------------
    def add_artifact(
        self,
        name: str,
        kind: str,
        path: Path | str,
        recipe: str | None = None,
        parent: str | None = None,
        run_id: str | None = None,
        manifest: dict | None = None,
    ) -> None:
        """Register a built folder; a folder under the home is stored relative to it, any other one absolute. A model
        registered again (rebuilt with --overwrite, taught again, pulled again) loses the exports of its earlier build:
        they hold the old weights, and `rank NAME` would otherwise serve them."""
        from qadistill.integrity import MANIFEST

        if (Path(path) / MANIFEST).is_file():  # what every later load can demand: a folder that loses it was changed
            manifest = {**(manifest or {}), "checksummed": True}
        with self.transaction() as c:
            if kind != "export":
                c.execute("DELETE FROM artifacts WHERE kind='export' AND parent=?", (name,))
            c.execute(
                "INSERT OR REPLACE INTO artifacts(name, kind, recipe, path, parent, run_id, created_at, manifest)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (name, kind, recipe, self._stored_path(path), parent, run_id, time.time(), json.dumps(manifest or {})),
            )

    def _stored_path(self, path: Path | str) -> str:
        p = Path(path).expanduser().absolute()
        for cand, home in ((p, self.home.absolute()), (p.resolve(), self.home.resolve())):
            try:
                rel = cand.relative_to(home)
            except ValueError:
                continue
            if rel.parts:
                return rel.as_posix()
        return str(p)

    def _artifact(self, row: sqlite3.Row) -> Artifact:
        p = Path(row["path"])
        try:
            manifest = json.loads(row["manifest"] or "{}")
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # one damaged row must not take the whole zoo down: the row says what it lost
            manifest = {"damaged_record": f"its manifest in the store is not readable JSON ({exc})"}
        return Artifact(**(dict(row) | {"path": str(p if p.is_absolute() else self.home / p), "manifest": manifest}))

    def drop_stale_results(self, artifact: str, before: float) -> int:
        """Forget the results of an earlier model that had this name (recorded before ``before``): a rebuilt artifact
        must never show the figures of the one it replaced."""
        with self.transaction() as c:
            return c.execute("DELETE FROM results WHERE artifact=? AND created_at<?", (artifact, before)).rowcount

    def remove_artifact(self, name: str) -> bool:
        with self.transaction() as c:
            return c.execute("DELETE FROM artifacts WHERE name=?", (name,)).rowcount > 0

    def artifacts(self, recipe: str | None = None) -> list[Artifact]:
        """Every artifact (or those of one recipe); a relative path is resolved against this store's home."""
        if recipe is None:
            rows = self.conn.execute("SELECT * FROM artifacts ORDER BY created_at").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM artifacts WHERE recipe=? OR parent=? ORDER BY created_at", (recipe, recipe)).fetchall()
        return [self._artifact(r) for r in rows]

    def artifact(self, name: str) -> Artifact | None:
        r = self.conn.execute("SELECT * FROM artifacts WHERE name=?", (name,)).fetchone()
        return None if r is None else self._artifact(r)

    # -- results --------------------------------------------------------------------------------------------------------
    def add_results(
        self,
        artifact: str,
        dataset: str,
        split: str,
        metrics: Mapping[str, float | None],
        run_id: str | None = None,
        notes: Mapping[str, str] | None = None,
    ) -> None:
        """Record metrics; an undefined one (None, NaN, inf) is stored as NULL with its note (the reason), never NaN."""
        now = time.time()
        notes = notes or {}
        rows = []
        for k, v in metrics.items():
            value = _defined(v)
            note = notes.get(k) or (None if value is not None else f"undefined (the metric was {v!r})")
            rows.append((run_id, artifact, dataset, split, k, value, note, now))
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO results(run_id, artifact, dataset, split, metric, value, note, created_at) VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )

    def results(self, artifact: str) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM results WHERE artifact=? ORDER BY created_at", (artifact,)).fetchall()
        return [dict(r) for r in rows]

    # -- bench --------------------------------------------------------------------------------------------------------
    def add_bench_run(self, run_id: str, env: dict, settings: dict, rows: list[dict]) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO bench_runs(id, created_at, env, settings) VALUES (?,?,?,?)",
                      (run_id, time.time(), json.dumps(env), json.dumps(settings)))
            c.executemany("INSERT INTO bench_rows(run_id, row) VALUES (?,?)", [(run_id, json.dumps(r)) for r in rows])

    def bench_run(self, run_id: str) -> dict | None:
        r = self.conn.execute("SELECT * FROM bench_runs WHERE id=?", (run_id,)).fetchone()
        if r is None:
            return None
        rows = [json.loads(x[0]) for x in self.conn.execute("SELECT row FROM bench_rows WHERE run_id=? ORDER BY id", (run_id,))]
        return {"run_id": r["id"], "created_at": r["created_at"], "env": json.loads(r["env"]), "settings": json.loads(r["settings"]), "rows": rows}

    def bench_runs(self, limit: int = 20) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT id, created_at FROM bench_runs ORDER BY created_at DESC LIMIT ?", (limit,))]

    def best_metric(self, artifact: str, metric: str = "map", dataset: str | None = None, split: str = "test") -> dict | None:
        """The best (max) defined value of ``metric`` for an artifact on ``dataset``:``split``, as {"dataset", "split",
        "value"}; None when there is none. ``dataset=None`` means the artifact's training dataset
        (``training_dataset``); for a name with no known training dataset (a pulled model, a recipe name), the dataset
        of its first result on that split, so a later eval on another dataset never replaces the figure."""
        dataset = dataset or self.training_dataset(artifact) or self._first_dataset(artifact, metric, split)
        if dataset is None:
            return None
        r = self.conn.execute(
            "SELECT MAX(value) FROM results WHERE artifact=? AND metric=? AND dataset=? AND split=? AND value IS NOT NULL",
            (artifact, metric, dataset, split),
        ).fetchone()
        return None if r[0] is None else {"dataset": dataset, "split": split, "value": r[0]}

    def _first_dataset(self, artifact: str, metric: str, split: str) -> str | None:
        r = self.conn.execute(
            "SELECT dataset FROM results WHERE artifact=? AND metric=? AND split=? AND value IS NOT NULL ORDER BY created_at, id LIMIT 1",
            (artifact, metric, split),
        ).fetchone()
        return None if r is None else r[0]

    def training_dataset(self, artifact: str) -> str | None:
        """The dataset an artifact was trained on, from its run's params (distill: data.name, teach: data); an export
        has its parent's. None when unknown."""
        seen: set[str] = set()
        art = self.artifact(artifact)
        while art is not None and art.name not in seen:
            seen.add(art.name)
            data = self._run_params(art.run_id).get("data") if art.run_id else None
            if isinstance(data, dict):
                data = data.get("name")
            if isinstance(data, str) and data:
                return data
            art = self.artifact(art.parent) if art.parent else None
        return None

    def _run_params(self, run_id: str) -> dict:
        r = self.conn.execute("SELECT params FROM runs WHERE id=?", (run_id,)).fetchone()
        params = json.loads(r[0]) if r is not None else {}
        return params if isinstance(params, dict) else {}
