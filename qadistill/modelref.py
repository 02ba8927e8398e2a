"""What a model name means once resolved: ``ModelRef`` (made only by ``Registry.resolve``), its exported variants
(``ExportRef``) and the one reader of an export's manifest (``qadistill_export.json``); it re-exports the variant
vocabulary (``qadistill.variants.Variant``) that export, bench, rank and recipes share. Light: no heavy import, no I/O at import time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from qadistill.variants import API_FAMILY, AUTO_ORDER, BENCH_BACKEND, Variant  # noqa: F401  (re-exported)

EXPORT_MANIFEST = "qadistill_export.json"


def export_manifest(folder: Path) -> dict:
    """How an exported variant was made (``qadistill_export.json``); {} for a folder that is not a qadistill export."""
    man = Path(folder) / EXPORT_MANIFEST
    if not man.exists():
        return {}
    try:
        d = json.loads(man.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        d = exc
    if not isinstance(d, dict):
        from qadistill.errors import ModelFolderError
        from qadistill.integrity import damaged_hint

        raise ModelFolderError(f"{man}: not a readable export manifest ({d if isinstance(d, Exception) else 'not a JSON object'})",
                               damaged_hint(Path(folder)))
    return d


BUILD_RECORD = "metrics.json"  # what distill and teach write into a model folder, its max_length included


def _usable_length(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 65536 else None


def recorded_max_length(folder: Path, manifest: dict | None = None) -> int | None:
    """The max length a qadistill-built folder was made for: its export manifest's (``manifest``, read if not given),
    else its build record's (``metrics.json``); None for a folder without a usable record (a user's own: callers pick
    their default)."""
    folder = Path(folder)
    found = _usable_length((export_manifest(folder) if manifest is None else manifest).get("max_length"))
    if found is None and (folder / BUILD_RECORD).is_file():
        try:
            record = json.loads((folder / BUILD_RECORD).read_text())
        except (ValueError, UnicodeDecodeError, OSError):
            record = None  # a damaged record: the folder's checksums name it when it loads
        found = _usable_length(record.get("max_length")) if isinstance(record, dict) else None
    return found


# Dev queries an export's parity check scores (the first ones with a correct and a wrong candidate; all of them where
# the split has fewer): on WikiQA dev (122 such queries) a 60-query sample moved an int8 export's MAP delta by up to
# a point from one near-identical export to the next (benchmarks/int8_embeddings.py), as much as the bound itself.
PARITY_QUERIES = 200
MIN_TRUSTED_PARITY_QUERIES = 10  # fewer scorable queries bound no MAP change: `auto` does not serve such a variant


@dataclass(frozen=True)
class ExportRef:
    """One exported variant of a model, as the store registered it."""

    name: str  # its zoo name (NAME-VARIANT)
    variant: str | None  # a Variant value (None for a manifest without one)
    folder: Path
    parity: dict = field(default_factory=dict, compare=False)  # the parity report export measured
    max_length: int | None = None

    @property
    def exists(self) -> bool:
        return self.folder.exists()

    def session(self) -> dict:
        """The ONNX Runtime session settings this variant was exported for (its manifest's ``ort_session``)."""
        return export_manifest(self.folder).get("ort_session") or {}


@dataclass(frozen=True)
class ModelRef:
    """A name, folder or Hub id resolved once: where the model is and what it is.

    ``kind``: ``teacher`` (a teacher recipe), ``prebuilt`` (a prebuilt recipe), ``student-model`` / ``teacher-model`` /
    ``export`` (built artifacts), ``folder`` (a path given as is) or ``hub`` (a Hub id outside the zoo).
    ``architecture``: cross-encoder or bi-encoder; a folder's is read from its config.json when asked (so a command
    that never needs it never reads that file).
    ``max_length``: what the recipe or the build recorded; None where nothing did (callers pick their default).
    ``exports``: the variants built from it, in the order they were registered (a cross-encoder's only).
    ``variant``: for an export (artifact or folder), which one it is. ``parent``: what an export was made from.
    ``content_hash``: the folder's content digest where the store recorded one, else None (computed on demand by
    ``qadistill.sources.folder_fingerprint``).
    """

    name: str
    folder: Path
    kind: str
    known_architecture: str | None  # None: a folder's, read on demand (see ``architecture``)
    max_length: int | None
    exports: tuple[ExportRef, ...] = ()
    variant: str | None = None
    parent: str | None = None
    content_hash: str | None = None
    recipe: object | None = field(default=None, compare=False)  # the recipe it came from (teacher, prebuilt)

    @property
    def architecture(self) -> str:
        if self.known_architecture is not None:
            return self.known_architecture
        from qadistill.sources import folder_architecture

        return folder_architecture(self.folder)

    @property
    def is_teacher(self) -> bool:
        return self.kind in ("teacher", "teacher-model")

    def built_exports(self) -> dict[str, ExportRef]:
        """Variants whose folder still exists, by variant (the last one registered wins)."""
        return {e.variant: e for e in self.exports if e.exists}

    def latest_exports(self) -> dict[str, ExportRef]:
        """The last registered export of each variant, whether or not its folder still exists."""
        return {e.variant: e for e in self.exports}
