"""The one vocabulary of exported variants (``Variant``) that export, bench, rank, the API and recipes share, with
each variant's bench backend and API family. Its own module so that recipes can name variants without importing
what resolves models (``qadistill.modelref`` re-exports it)."""

from __future__ import annotations

from enum import Enum


class Variant(str, Enum):
    """An exported form of a model. Its value is what export writes into the manifest and the zoo (NAME-VALUE)."""

    onnx = "onnx"
    optimized = "optimized"
    int8_dynamic = "int8-dynamic"
    int8_static = "int8-static"
    fp16 = "fp16"

    @property
    def bench_backend(self) -> str:
        """The `qadistill bench --backends` name that runs this variant."""
        return BENCH_BACKEND[self]

    @property
    def is_int8(self) -> bool:
        return self in (Variant.int8_dynamic, Variant.int8_static)

    @property
    def api_backend(self) -> str:
        """The ``qadistill.load(backend=...)`` family this variant belongs to: onnx-int8 or onnx."""
        return "onnx-int8" if self.is_int8 else "onnx"

    @property
    def hub_file(self) -> str:
        """Its file name under onnx/ in a folder `zoo push` uploads."""
        return "model.onnx" if self is Variant.onnx else f"model_{self.value.replace('-', '_')}.onnx"

    @property
    def recipe_target(self) -> str:
        """Its name in a recipe's ``[export] targets``."""
        return "onnx-optimized" if self is Variant.optimized else self.value

    @classmethod
    def of_bench_backend(cls, backend: str) -> "Variant | None":
        return next((v for v, b in BENCH_BACKEND.items() if b == backend), None)


def export_flags(variant: str, record: dict) -> str:
    """The `qadistill export` options that make ``variant`` again as its export record says it was made ("" for the
    plain ONNX one, which every export makes): what a damaged variant's hint tells to run."""
    per_channel = " --per-channel" if record.get("per_channel") else ""
    flags = {"optimized": f"--optimize {record.get('level') or 'O2'}",
             "int8-dynamic": "--quantize dynamic" + per_channel + (" --fp32-first-attention" if record.get("fp32_first_attention") else ""),
             "int8-static": "--quantize static" + per_channel, "fp16": "--fp16"}
    return flags.get(variant, "")


BENCH_BACKEND = {Variant.onnx: "ort", Variant.optimized: "ort-optimized", Variant.int8_dynamic: "ort-int8",
                 Variant.int8_static: "ort-int8-static", Variant.fp16: "ort-fp16"}
# `auto` serves the first of these that passed its parity check; a named onnx family tries its own in this order
AUTO_ORDER = (Variant.int8_dynamic, Variant.int8_static, Variant.onnx)
API_FAMILY = {"onnx-int8": (Variant.int8_dynamic, Variant.int8_static), "onnx": (Variant.onnx, Variant.optimized)}
