"""ONNX export and graph optimization behind one pair of functions, :func:`export` and :func:`optimize`, on either line
of the Hugging Face stack:

- ``optimum``: Optimum's exporter (``ORTModelForSequenceClassification.from_pretrained(export=True)``) and
  ``ORTOptimizer``, where ``optimum.onnxruntime`` and ``optimum.exporters.onnx`` import (transformers 4.x: optimum-onnx
  0.1 pins transformers < 4.58);
- ``torch``: ``torch.onnx.export`` (the TorchScript exporter, as Optimum calls it: same opset, input and output names,
  dynamic batch and sequence axes, constant folding) and ``onnxruntime.transformers.optimizer.optimize_model`` with the
  fusion options of Optimum's O1-O4 levels. This needs neither optimum nor optimum-onnx, so it runs beside
  transformers 5.

Both give a folder with ``model.onnx`` (inputs ``input_ids``, ``attention_mask`` and, where the tokenizer makes them,
``token_type_ids``; output ``logits``), the model's config and its tokenizer: the ORT backends, the quantizers and the
parity check read either. ``QADISTILL_EXPORTER=torch`` (or ``optimum``) picks one by hand; `qadistill doctor` says which
one is active and why.

Also here: the dynamic int8 presets (:class:`QuantPreset`), the settings of Optimum's ``AutoQuantizationConfig``
factories written out, so quantization needs no Optimum on either line.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from qadistill.errors import ExportError, UserInputError

EXPORTER_ENV = "QADISTILL_EXPORTER"
OPSET = 18  # optimum-onnx 0.1's default for every text encoder
OPT_LEVELS = ("O1", "O2", "O3", "O4")
# model_type -> ONNX Runtime optimizer model type, for the encoders Optimum's ORTConfigManager lists as "bert"
ORT_MODEL_TYPES = {t: "bert" for t in ("albert", "bert", "big_bird", "camembert", "deberta", "deberta-v2", "distilbert",
                                       "electra", "modernbert", "mpnet", "nystromformer", "roberta", "xlm-roberta")}
# Optimum's levels (AutoOptimizationConfig._LEVELS): (ORT opt_level, transformer fusions, fast GELU approximation)
_LEVELS = {"O1": (1, False, False), "O2": (2, True, False), "O3": (2, True, True), "O4": (2, True, True)}


@dataclass(frozen=True)
class Exporter:
    """The exporter in use. ``name``: "optimum" or "torch"; ``reason``: why it is the one (shown by doctor)."""

    name: str
    reason: str

    @property
    def label(self) -> str:
        return "Optimum + ORTOptimizer" if self.name == "optimum" else "torch.onnx + ORT optimizer"

    def describe(self) -> str:
        return f"{self.label} ({self.reason})"


@functools.lru_cache(maxsize=1)
def _optimum_status() -> str | None:
    """None when Optimum's ONNX exporter and ORT tools import; else why not, in a few words."""
    from importlib import metadata

    try:
        metadata.version("optimum-onnx")
    except metadata.PackageNotFoundError:
        return "optimum-onnx not installed"
    try:
        import optimum.exporters.onnx  # noqa: F401
        import optimum.onnxruntime  # noqa: F401
    except Exception as exc:  # an optimum-onnx beside a transformers it does not support fails in many ways
        return f"optimum.onnxruntime does not import: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
    return None


def active_exporter() -> Exporter:
    """Optimum where it imports, else torch.onnx + the ORT optimizer; ``QADISTILL_EXPORTER`` overrides."""
    from importlib import metadata

    forced = os.environ.get(EXPORTER_ENV, "").strip().lower()
    if forced not in ("", "auto", "optimum", "torch"):
        raise UserInputError(f"{EXPORTER_ENV}={forced!r} is not an exporter", "set it to optimum, torch or auto (or unset it)")
    if forced == "torch":
        return Exporter("torch", f"{EXPORTER_ENV}=torch")
    why_not = _optimum_status()
    if why_not is None:
        return Exporter("optimum", f"optimum-onnx {metadata.version('optimum-onnx')} installed")
    if forced == "optimum":
        raise ExportError(f"{EXPORTER_ENV}=optimum, but {why_not}",
                          "pip install 'qadistill[optimum]' (needs transformers < 4.58), or unset it to use torch.onnx")
    return Exporter("torch", why_not)


# ---------------------------------------------------------------------------------------------------------------------
def export(folder: Path, dest: Path) -> Exporter:
    """fp32 ONNX export of the sequence-classification model in ``folder`` into ``dest`` (model.onnx, config,
    tokenizer), with the active exporter, which it returns."""
    exporter = active_exporter()
    if exporter.name == "optimum":
        _optimum_export(Path(folder), Path(dest))
    else:
        torch_export(Path(folder), Path(dest))
    return exporter


def _optimum_export(folder: Path, dest: Path) -> None:
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    try:
        m = ORTModelForSequenceClassification.from_pretrained(str(folder), export=True, provider="CPUExecutionProvider")
    except (ValueError, KeyError, NotImplementedError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"Optimum cannot export {folder}: {msg}", "use a BERT-family student (all built-in students are)") from None
    m.save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(dest))


def export_input_names(model, tokenizer) -> list[str]:
    """The graph's inputs, in the order of ``model.forward``'s parameters (as Optimum orders them): input_ids,
    attention_mask, and token_type_ids where both the model takes and the tokenizer makes them."""
    import inspect

    params = list(inspect.signature(model.forward).parameters)
    made = set(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask", "token_type_ids"])
    wanted = {"input_ids", "attention_mask"} | ({"token_type_ids"} & made)
    return [p for p in params if p in wanted]


def torch_export(folder: Path, dest: Path, opset: int = OPSET) -> None:
    """``torch.onnx.export`` of ``folder`` (eager attention, so the ORT optimizer's attention fusion finds its pattern),
    traced on a real two-pair batch of different lengths, with dynamic batch and sequence axes."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from qadistill.integrity import load_pretrained

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = load_pretrained(AutoModelForSequenceClassification, folder, attn_implementation="eager").eval()
    names = export_input_names(model, tok)
    enc = tok(["what is exported here?", "who wrote it?"], ["a passage of a few words", "a shorter one"], padding=True, return_tensors="pt")
    feeds = {n: enc[n] for n in names}
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names} | {"logits": {0: "batch_size"}}
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad():
            torch.onnx.export(model, (feeds,), str(dest / "model.onnx"), input_names=names, output_names=["logits"],
                              dynamic_axes=axes, do_constant_folding=True, opset_version=opset, dynamo=False)
    except Exception as exc:  # the TorchScript exporter raises many types for an unsupported op
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"torch.onnx cannot export {folder}: {msg}"[:300], "use a BERT-family student (all built-in students are)") from None
    model.config.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))


# ---------------------------------------------------------------------------------------------------------------------
def check_level(level: str, for_gpu: bool) -> None:
    if level not in OPT_LEVELS:
        raise UserInputError(f"--optimize {level!r} is not a level", f"use one of {', '.join(OPT_LEVELS)}")
    if level == "O4" and not for_gpu:
        raise ExportError("O4 (mixed fp16) only runs fast on a CUDA GPU", "use --optimize O2 or O3 on the CPU, or run on a GPU machine")


def optimize(onnx_dir: Path, dest: Path, level: str, for_gpu: bool = False, fuse_skip_layernorm: bool = True) -> None:
    """``onnx_dir/model.onnx`` optimized at Optimum's ``level`` into ``dest/model.onnx`` (with the folder's config and
    tokenizer), by the active exporter's optimizer. ExportError where ONNX Runtime has no fusions for the model type."""
    check_level(level, for_gpu)
    onnx_dir, dest = Path(onnx_dir), Path(dest)
    if active_exporter().name == "optimum":
        _optimum_optimize(onnx_dir, dest, level, for_gpu, fuse_skip_layernorm)
    else:
        ort_optimize(onnx_dir, dest, level, for_gpu, fuse_skip_layernorm)


def _optimum_optimize(onnx_dir: Path, dest: Path, level: str, for_gpu: bool, fuse_skip_layernorm: bool) -> None:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    unfuse = {} if fuse_skip_layernorm else {"disable_skip_layer_norm_fusion": True, "disable_bias_skip_layer_norm_fusion": True}
    cfg = AutoOptimizationConfig.with_optimization_level(level, for_gpu=for_gpu, **unfuse)
    try:
        ORTOptimizer.from_pretrained(str(onnx_dir)).optimize(save_dir=str(dest), optimization_config=cfg)
    except (KeyError, NotImplementedError) as exc:  # Optimum's "model type is not supported" errors
        msg = str(exc.args[0] if exc.args else exc).split(". ")[0]
        raise ExportError(f"ONNX Runtime cannot optimize this graph: {msg}", "keep the onnx and int8-dynamic variants (--quantize dynamic, without --optimize)") from None
    produced = dest / "model_optimized.onnx"
    if produced.exists():
        produced.replace(dest / "model.onnx")


def fusion_options(level: str, fuse_skip_layernorm: bool = True):
    """ONNX Runtime FusionOptions equal to what Optimum's OptimizationConfig at ``level`` parses into: the defaults for
    "bert", EmbedLayerNormalization off (Optimum's default), fast GELU from O3, SkipLayerNormalization as asked."""
    from onnxruntime.transformers.fusion_options import FusionOptions

    opts = FusionOptions("bert")
    opts.enable_embed_layer_norm = False
    opts.enable_gelu_approximation = _LEVELS[level][2]
    if not fuse_skip_layernorm:
        opts.enable_skip_layer_norm = opts.enable_bias_skip_layer_norm = False
    return opts


def ort_optimize(onnx_dir: Path, dest: Path, level: str, for_gpu: bool = False, fuse_skip_layernorm: bool = True) -> None:
    """The ORT transformer optimizer as ORTOptimizer runs it: heads and hidden size from the config, Optimum's opt
    level and fusions; O4 also converts to fp16 keeping fp32 inputs and outputs."""
    import json

    from onnxruntime.transformers.optimizer import optimize_model

    cfg = json.loads((onnx_dir / "config.json").read_text())
    ort_type = ORT_MODEL_TYPES.get(cfg.get("model_type", ""))
    if ort_type is None:
        raise ExportError(f"ONNX Runtime cannot optimize this graph: {cfg.get('model_type')!r} has no transformer fusions here",
                          "keep the onnx and int8-dynamic variants (--quantize dynamic, without --optimize)")
    opt_level, fusions, _ = _LEVELS[level]
    copy_side_files(onnx_dir, dest)
    opt = optimize_model(str(onnx_dir / "model.onnx"), ort_type, cfg["num_attention_heads"], cfg["hidden_size"], opt_level=opt_level,
                         optimization_options=fusion_options(level, fuse_skip_layernorm), use_gpu=for_gpu, only_onnxruntime=not fusions)
    if level == "O4":
        opt.convert_float_to_float16(use_symbolic_shape_infer=True, keep_io_types=True)
    opt.save_model_to_file(str(dest / "model.onnx"))


def copy_side_files(onnx_dir: Path, dest: Path) -> None:
    """Config, tokenizer and the rest of an ONNX folder, without its graph (the optimizer or quantizer writes the new one)."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for f in Path(onnx_dir).iterdir():
        if f.is_file() and f.suffix != ".onnx":
            shutil.copy2(f, dest / f.name)


# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantPreset:
    """Dynamic int8 settings of one CPU family: those of Optimum's ``AutoQuantizationConfig.<name>(is_static=False)``
    with its defaults (tests/test_onnx_export.py compares them where Optimum is installed).

    - ``weight_type``: ONNX Runtime QuantType name of the weights (avx2: QUInt8 — its u8·u8 kernel; else QInt8);
    - ``reduce_range``: 7-bit weights (Optimum's default is False for every preset);
    - ``weights_symmetric`` / ``activations_symmetric``: symmetric weights, asymmetric (uint8) activations.
    """

    name: str
    weight_type: str
    reduce_range: bool = False
    weights_symmetric: bool = True
    activations_symmetric: bool = False

    def quant_type(self):
        from onnxruntime.quantization import QuantType

        return QuantType[self.weight_type]

    @staticmethod
    def operators() -> list[str]:
        """The operators dynamic quantization covers: ONNX Runtime's IntegerOps registry (Optimum's default)."""
        from onnxruntime.quantization.registry import IntegerOpsRegistry

        return list(IntegerOpsRegistry)


# avx2: u8 weights (its u8·u8 kernel); the others s8
PRESETS = {p.name: p for p in (QuantPreset("avx2", "QUInt8"), QuantPreset("avx512", "QInt8"), QuantPreset("avx512_vnni", "QInt8"),
                               QuantPreset("arm64", "QInt8"))}
