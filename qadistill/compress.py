"""Export and compress a student or teacher: ONNX export and graph optimization (Optimum + ORTOptimizer, or torch.onnx +
the ONNX Runtime optimizer where optimum-onnx is absent: qadistill.onnx_export), int8 quantization
(dynamic with ORTQuantizer presets; static with ONNX Runtime's calibrators), fp16 for GPU — each followed by a parity
check against PyTorch (max |Δlogit| and the MAP delta on a fixed sample of the dev split).

Every variant is a folder (model.onnx, config, tokenizer, ``qadistill_export.json`` with how it was made and its
parity figures), written to a temp path and renamed into place, and registered in the zoo as ``NAME-VARIANT``.
"""

from __future__ import annotations

import contextlib
import os
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qadistill import __version__, paths
from qadistill.errors import DiskFullError, ExportError, ExportInputError, ParityError, UserInputError
from qadistill.fsutil import atomic_write_text, check_replaceable, is_disk_full, low_on_space, replace_dir
from qadistill.integrity import write_checksums
from qadistill.modelref import PARITY_QUERIES, Variant
from qadistill.onnx_export import copy_side_files

PRESETS = ("avx2", "avx512", "avx512_vnni", "arm64")
CALIB_METHODS = ("minmax", "percentile", "entropy")


def cpu_session(fuse_skip_layernorm: bool = False) -> dict:
    """ONNX Runtime session settings for a CPU variant, recorded in its manifest (``ort_session``) and applied by
    OrtBackend, so that bench, eval, rank and the parity check run the variant as it was measured:

    - denormals flushed to zero: the fused attention's masked softmax of a padded batch produces denormal floats, which
      x86 handles slowly; the flush touches values below 1e-38 only.
    - SkipLayerNormalization unfused (unless ``fuse_skip_layernorm``): ONNX Runtime 1.32's fused CPU kernel ran 2-3x
      slower here than the Add + Add + LayerNormalization it replaces (benchmarks/skip_layernorm.py ->
      results/skip_layernorm.txt); on the int8 student it was a fifth of the time. The optimizer leaves them apart in
      the graph and the session must not fuse them again at load time. ``--fuse-skip-layernorm`` keeps the fusion for
      CPUs where the fused kernel wins.

    On the benched student at length 128 (benchmarks/ort_session_ab.py -> results/ort_session_ab.json, alternating
    processes): int8 dynamic 1.66x / 1.63x faster than with ONNX Runtime's defaults at batch 1 / 32, fp32 1.21x / 1.08x.
    """
    s: dict = {"config": {"session.set_denormal_as_zero": "1"}}
    if not fuse_skip_layernorm:
        s["disabled_optimizers"] = ["SkipLayerNormFusion"]
    return s


@dataclass
class ExportRequest:
    variant: str  # a Variant value: onnx | optimized | int8-dynamic | int8-static | fp16
    optimize: str = "O2"
    preset: str = "auto"
    calibration_method: str = "percentile"
    calibration_pairs: int = 256
    per_channel: bool = False
    fuse_skip_layernorm: bool = False
    fp32_first_attention: bool = False  # int8 dynamic: the first layer's attention (Q/K/V projections) stays fp32
    fp32_sensitive: int = 0  # int8 dynamic: this many operators, the most sensitive on the dev parity sample, stay fp32


@dataclass
class ParityReport:
    max_abs_diff: float
    map_reference: float
    map_variant: float
    map_delta_points: float  # (variant − reference) × 100
    pairs: int
    queries: int
    ok: bool
    bound_points: float
    reference_std: float | None = None  # spread of the PyTorch logits on the sample (None: not recorded)

    @property
    def unstable(self) -> bool:
        return ties_reordered(self.max_abs_diff, self.reference_std)


def ties_reordered(max_abs_diff: float, reference_std: float | None) -> bool:
    """A variant's logit error is at least half the spread of the model's own logits: its rankings differ by near-ties
    broken differently, so its MAP delta on the sample says little about the variant and `auto` should not serve it.
    Unknown spread (exports made before it was recorded): False."""
    return reference_std is not None and max_abs_diff >= 0.5 * reference_std


@dataclass
class VariantResult:
    name: str
    variant: str
    path: str
    size_bytes: int
    seconds: float
    parity: ParityReport | None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


def auto_preset() -> str:
    from qadistill.doctor import cpu_features

    f = cpu_features()
    if f["arm64_dotprod"]:
        return "arm64"
    if f["avx512_vnni"]:
        return "avx512_vnni"
    if f["avx512f"]:
        return "avx512"
    if f["avx2"]:
        return "avx2"
    raise ExportError("this CPU has none of avx2 / avx512 / arm64 dot-product: int8 would run slower than fp32",
                      "keep the fp32 or optimized ONNX variant")


def check_model_folder(folder: Path) -> None:
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ExportInputError(f"{folder} is not a model folder: no config.json", "point at a student/teacher folder (see `qadistill zoo show NAME`)")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ExportInputError(f"{folder} is incomplete: no weights (model.safetensors)", "rebuild it, e.g. `qadistill distill ...`")
    if not (folder / "tokenizer.json").exists() and not (folder / "vocab.txt").exists():
        raise ExportInputError(f"{folder} is incomplete: no tokenizer files", "save the tokenizer into the folder")
    from qadistill.integrity import verify_checksums
    from qadistill.sources import check_model_folder as loadable

    verify_checksums(folder)  # a damaged recorded file is named as such (and exit 2), before its contents are read
    cfg = loadable(folder)  # config.json that parses into an object
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ExportInputError(f"{folder / 'config.json'}: architectures is not a list of names", "re-pull or rebuild the model")
    if not any("SequenceClassification" in a for a in archs):
        raise ExportInputError(f"{folder} is a {', '.join(archs or ['?'])}, not a relevance (sequence-classification) model",
                          "export a cross-encoder teacher or a distilled student")


def export_onnx(folder: Path, dest: Path) -> None:
    """fp32 ONNX export + config + tokenizer, through Optimum where it imports, else torch.onnx (qadistill.onnx_export)."""
    from qadistill import onnx_export

    onnx_export.export(folder, dest)


def optimize_onnx(onnx_dir: Path, dest: Path, level: str, for_gpu: bool = False, fuse_skip_layernorm: bool = True) -> None:
    """Graph optimization at one of Optimum's levels (ORTOptimizer, or the ONNX Runtime optimizer with the same fusion
    options where Optimum is absent: qadistill.onnx_export)."""
    from qadistill import onnx_export

    onnx_export.optimize(onnx_dir, dest, level, for_gpu=for_gpu, fuse_skip_layernorm=fuse_skip_layernorm)


def quantize_dynamic(onnx_dir: Path, dest: Path, preset: str, per_channel: bool = False, fp32_first_attention: bool = False,
                     fp32_nodes: list[str] | tuple[str, ...] = (), only_nodes: list[str] | tuple[str, ...] = (),
                     embedding_rows: bool = True) -> None:
    """Dynamic int8 of ``onnx_dir/model.onnx`` with the settings of Optimum's ``preset`` (weight type, symmetry, which
    operators: :class:`qadistill.onnx_export.QuantPreset`, so no Optimum is needed), run through ONNX Runtime's quantizer directly: Optimum's ORTQuantizer cannot quantize a fused graph
    (its shape inference stops at the com.microsoft ops), and quantizing the fused graph is what makes int8 fast — a
    fused Attention becomes QAttention (int8 Q/K/V projection inside the fused kernel) instead of a dozen small ops.
    Only MatMuls with a constant operand are quantized (``MatMulConstBOnly``): quantizing the attention products of an
    unfused graph costs a quantize step per call, on the softmax output too, for no gain (an in-process A/B, superseded by benchmarks/int8_settings.py; its output stays in git:
    ``git show 4650829:benchmarks/results/int8_ab_inprocess.txt``).

    The embedding tables are not left to the quantizer's Gather support, which gives the whole 30k×H word table one
    scale: they get one scale per row (:func:`quantize_embedding_rows`), the same size. On the quickstart student's word
    table that is 4.5x less mean reconstruction error; on three quickstart students (per channel) the mean |Δlogit| on
    WikiQA dev was that of fp32 embeddings on two (.0172 vs .0174, .0506 vs .0508; one scale per table: .0195, .0524)
    and worse on the third (.0193 vs .0149; per table .0172) — the MAP deltas of all three settings are within the
    sample's noise (benchmarks/int8_embeddings.py).

    ``fp32_first_attention`` leaves the first layer's attention unquantized (:func:`first_attention_nodes`): its Q/K/V
    projection reads the embedding LayerNorm's output, whose few large channels set the per-tensor activation scale.
    On the same three students it lowered the mean |Δlogit| on all three and took the int8 MAP delta on WikiQA dev (122
    queries) from -1.18 / -0.39 / -0.10 points to -0.15 / +0.36 / +0.04, for 4-5% more time at batch 32 and 5-40% at
    batch 1 (length 128), 1.3 MB more (benchmarks/int8_embeddings.py).

    ``fp32_nodes`` are left unquantized too (:func:`node_sensitivity` picks them); ``only_nodes``, when given, are the
    only ones quantized (the sensitivity probe), and ``embedding_rows=False`` leaves the embedding tables fp32."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    from qadistill.onnx_export import PRESETS as SETTINGS

    cfg = SETTINGS.get(preset)
    if cfg is None:
        raise UserInputError(f"--preset {preset!r} is not a preset", f"use auto or one of {', '.join(PRESETS)}")
    copy_side_files(onnx_dir, dest)
    ort_quantize_dynamic(
        str(onnx_dir / "model.onnx"), str(dest / "model.onnx"),
        op_types_to_quantize=[o for o in cfg.operators() if o != "Gather"],
        nodes_to_quantize=list(only_nodes) or None,
        nodes_to_exclude=[*(first_attention_nodes(onnx_dir / "model.onnx") if fp32_first_attention else []), *fp32_nodes],
        per_channel=per_channel, reduce_range=cfg.reduce_range, weight_type=cfg.quant_type(),
        extra_options={"WeightSymmetric": cfg.weights_symmetric, "ActivationSymmetric": cfg.activations_symmetric,
                       "MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    if embedding_rows:
        quantize_embedding_rows(dest / "model.onnx")


def quantizable_nodes(model_path: Path, preset: str) -> list[str]:
    """The nodes int8 dynamic quantizes in ``model_path`` with ``preset``'s operators: every fused Attention and every
    MatMul whose weight is a constant (``MatMulConstBOnly``), in graph order; Gathers (embedding tables) are not
    counted, :func:`quantize_embedding_rows` handles them."""
    import onnx

    from qadistill.onnx_export import PRESETS as SETTINGS

    g = onnx.load(str(model_path), load_external_data=False).graph
    consts = {t.name for t in g.initializer}
    ops = set(SETTINGS[preset].operators()) - {"Gather"}
    return [n.name for n in g.node if n.op_type in ops and (n.op_type != "MatMul" or (len(n.input) > 1 and n.input[1] in consts))]


def node_sensitivity(graph: Path, sample, max_length: int, preset: str, per_channel: bool, tmp: Path,
                     session: dict | None = None, progress=None, nodes: list[str] | None = None) -> list[dict]:
    """How much int8 dynamic moves the scores when each quantizable node (:func:`quantizable_nodes`) is the only one
    quantized: the mean |Δlogit| against ``graph`` in fp32 over ``sample`` (the dev parity sample), most sensitive first.
    One quantization and one scoring of the sample per node. The errors of single nodes roughly add, so keeping the
    first K in fp32 removes most of int8's error for K nodes' speed (``export --fp32-sensitive K``). ``nodes``: the
    graph's quantizable nodes where the caller has listed them already."""
    import numpy as np

    from qadistill.backends import OrtBackend
    from qadistill.progress import NullProgress

    nodes = quantizable_nodes(graph / "model.onnx", preset) if nodes is None else nodes
    task = (progress or NullProgress()).task("int8 sensitivity per operator", len(nodes) + 1)
    ref = scores_with(OrtBackend(graph, max_length, session=session), sample)
    task.advance(1)
    out = []
    for i, node in enumerate(nodes):
        dest = tmp / f"sens-{i}"
        with _quiet_root_logger():
            quantize_dynamic(graph, dest, preset, per_channel, only_nodes=[node], embedding_rows=False)
        s = scores_with(OrtBackend(dest, max_length, session=session), sample)
        out.append({"node": node, "mean_abs_diff": float(np.abs(s - ref).mean())})
        shutil.rmtree(dest, ignore_errors=True)
        task.advance(1)
    return sorted(out, key=lambda r: -r["mean_abs_diff"])


def first_attention_nodes(model_path: Path) -> list[str]:
    """The node(s) of the first transformer layer's attention input projection: the first fused ``Attention`` node of
    the graph, or in an unfused graph the MatMuls of the first ``.../attention/self/`` block (query, key, value)."""
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    fused = [n.name for n in nodes if n.op_type == "Attention"]
    if fused:
        return fused[:1]
    prefix = next((n.name.split("/attention/self/")[0] for n in nodes if n.op_type == "MatMul" and "/attention/self/" in n.name), None)
    if prefix is None:
        raise ExportError("this graph has no attention node that --fp32-first-attention could keep in fp32",
                          "export without --fp32-first-attention")
    return [n.name for n in nodes if n.op_type == "MatMul" and n.name.startswith(prefix + "/attention/self/")
            and any(k in n.name for k in ("query", "key", "value"))]


def quantize_embedding_rows(model_path: Path) -> int:
    """Store every embedding table of ``model_path`` (a 2-D float32 initializer read only by Gathers on axis 0) as int8
    with one symmetric scale per row, in place: ``Gather(W, ids)`` becomes ``Gather(Wq, ids) → Cast → Mul(Gather(scale,
    ids))``, so only the gathered rows are dequantized. Returns how many tables were rewritten."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def is_row_gather(node, name) -> bool:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        return node.op_type == "Gather" and axis == 0 and list(node.input).index(name) == 0 and node.domain in ("", "ai.onnx")

    tables = [n for n, t in inits.items() if t.data_type == TensorProto.FLOAT and len(t.dims) == 2 and n not in graph_outputs
              and readers.get(n) and all(is_row_gather(r, n) for r in readers[n])]
    if not tables:
        return 0
    replaced: dict[str, tuple[str, str]] = {}
    for name in tables:
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8_rows"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{name}_row_scale")])
        replaced[name] = (f"{name}_int8_rows", f"{name}_row_scale")
    nodes = []
    for i, node in enumerate(graph.node):
        table = node.input[0] if node.op_type == "Gather" and node.input and node.input[0] in replaced else None
        if table is None:
            nodes.append(node)
            continue
        q_name, s_name = replaced[table]
        ids, out, tag = node.input[1], node.output[0], f"{node.name or 'Gather'}_{i}_rows"
        nodes += [helper.make_node("Gather", [q_name, ids], [f"{tag}_q"], name=f"{tag}_q", axis=0),
                  helper.make_node("Gather", [s_name, ids], [f"{tag}_s"], name=f"{tag}_s", axis=0),
                  helper.make_node("Cast", [f"{tag}_q"], [f"{tag}_f"], name=f"{tag}_cast", to=TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{tag}_f", f"{tag}_s"], [out], name=f"{tag}_dequant")]
    del graph.node[:]
    graph.node.extend(nodes)
    tmp = model_path.with_name(model_path.name + ".rows.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(model_path)
    return len(tables)


def quantize_static(onnx_dir: Path, dest: Path, calib_batches: list[dict], method: str, per_channel: bool = False) -> None:
    """Static int8 (QDQ, uint8 activations / int8 weights: the fast form on x86) calibrated on real pairs.

    Only MatMul is quantized: quantizing every op (Gather, Add, Softmax, the residual adds before LayerNorm) cost ~10 MAP
    points on the WikiQA dev sample with a 3-layer student; MatMul-only kept it within 0.3 (benchmarks/RESULTS.md)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    if not calib_batches:
        raise ExportError("static quantization needs calibration data", "pass --data with labelled or unlabelled pairs (e.g. wikiqa)")
    cm = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}.get(method)
    if cm is None:
        raise UserInputError(f"--calibration-method {method!r} is not a method", f"use one of {', '.join(CALIB_METHODS)}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib_batches)

        def get_next(self):
            return next(self.it, None)

    copy_side_files(onnx_dir, dest)
    # ONNX Runtime's calibrators print progress to stdout, which belongs to `--format json`: drop it (kept on stderr
    # with QADISTILL_DEBUG=1); our own progress bar says how far it is
    sink = sys.stderr if os.environ.get("QADISTILL_DEBUG") else open(os.devnull, "w")
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sink):
        ort_quantize_static(
            str(onnx_dir / "model.onnx"), str(dest / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel, calibrate_method=cm,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "CalibTensorRangeSymmetric": False},
        )
        del tmp


class _quiet_root_logger:
    """ONNX Runtime's quantizer logs advice through the root logger; keep the terminal for our own output."""

    def __enter__(self):
        import logging

        self.logger = logging.getLogger()
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


# ---------------------------------------------------------------------------------------------------------------------
def parity_sample(data: str = "wikiqa", split: str = "dev", queries: int = PARITY_QUERIES):
    """A fixed sample of the dev split: its first ``queries`` queries that have both a correct and a wrong candidate."""
    from qadistill.data import QADataset, load_dataset

    ds = load_dataset(data, split)
    return QADataset(ds.name, f"{split}[parity:{queries}q]", ds.subset_queries(queries, scorable=True).pairs, ds.path)


def scores_with(backend, ds, batch_size: int = 32):
    """The logits of ``ds`` through ``backend`` (loaded here, closed after), in batches in the dataset's order."""
    backend.load()
    try:
        return backend.score([p.query for p in ds.pairs], [p.passage for p in ds.pairs], batch_size)
    finally:
        backend.close()


def parity(reference, variant_scores, ds, bound_points: float) -> ParityReport:
    import numpy as np

    from qadistill.metrics import ranking_metrics

    q = [p.query_id for p in ds.pairs]
    y = ds.labels()
    ref_map = ranking_metrics(q, reference.tolist(), y)["map"]
    var_map = ranking_metrics(q, variant_scores.tolist(), y)["map"]
    delta = (var_map - ref_map) * 100
    return ParityReport(float(np.abs(reference - variant_scores).max()), ref_map, var_map, delta, len(y),
                        len({x for x in q}), delta >= -bound_points, bound_points, float(np.std(reference)))


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).glob("*.onnx"))


def default_variants(cuda: bool) -> list[str]:
    return [v.value for v in Variant if cuda or v is not Variant.fp16]


VARIANTS = tuple(v.value for v in Variant)


def check_export_request(variants: list[str], req: ExportRequest) -> bool:
    """Errors a request can be refused with before any export work is done; returns whether CUDA is here."""
    from qadistill.onnx_export import active_exporter

    active_exporter()  # a QADISTILL_EXPORTER that names no usable exporter
    for v in variants:
        if v not in VARIANTS:
            raise UserInputError(f"unknown variant {v!r}", "use onnx, optimized, int8-dynamic, int8-static or fp16")
    if req.fp32_sensitive < 0:
        raise UserInputError(f"--fp32-sensitive {req.fp32_sensitive} is negative", "pass how many operators to keep in fp32: 0 (none) or more")
    # an option no variant of this export reads is refused, never silently ignored: (what it applies to, the variants
    # that read it, the --quantize that makes one)
    dynamic = ("int8 dynamic", "int8-dynamic", {Variant.int8_dynamic}, "--quantize dynamic")
    static = ("static int8", "int8-static", {Variant.int8_static}, "--quantize static")
    int8 = ("int8", "int8", {Variant.int8_dynamic, Variant.int8_static}, "--quantize dynamic")
    for given, option, (needs, variant, readers, add) in (
        (req.fp32_sensitive, "--fp32-sensitive", dynamic),
        (req.fp32_first_attention, "--fp32-first-attention", dynamic),
        (req.per_channel, "--per-channel", int8),
        (req.preset != "auto", f"--preset {req.preset}", int8),
        (req.calibration_method != "percentile", f"--calibration-method {req.calibration_method}", static),
        (req.calibration_pairs != 256, f"--calibration-pairs {req.calibration_pairs}", static),
    ):
        if given and not readers & set(variants):
            raise UserInputError(f"{option} applies to {needs} only, and this export makes no {variant} variant",
                                 f"add {add}, or drop {option.split()[0]}")
    if Variant.int8_static in variants and req.calibration_method not in CALIB_METHODS:
        raise UserInputError(f"--calibration-method {req.calibration_method!r} is not a method", f"use one of {', '.join(CALIB_METHODS)}")
    cuda = _cuda_ok()
    if Variant.fp16 in variants and not cuda:
        raise ExportError("fp16 ONNX is for CUDA GPUs: ONNX Runtime on this CPU runs fp16 slower than fp32",
                          "run the fp16 export on a machine with CUDA and onnxruntime-gpu (see `qadistill doctor`)")
    return cuda


@dataclass
class _ExportJob:
    """What every variant of one export shares: the model, its fp32 ONNX base, the request and the parity sample."""

    name: str
    folder: Path
    req: ExportRequest
    preset: str
    max_length: int
    data: str
    bound_points: float
    sample: object
    reference: object  # the PyTorch logits on the sample
    tmp: Path
    base: Path
    base_seconds: float
    progress: object = None
    strict: bool = False  # a variant past the bound is not put in place (--strict)
    placed: list = field(default_factory=list)  # the variants put in place so far (VariantResult)


def build_variant(job: _ExportJob, v: str, dest: Path) -> dict:
    """Make variant ``v`` from the ONNX base into ``dest``; returns how it was made (the manifest's details)."""
    req, details, v = job.req, {}, Variant(v)
    if v is Variant.onnx:
        shutil.copytree(job.base, dest)
    elif v is Variant.optimized:
        optimize_onnx(job.base, dest, req.optimize, fuse_skip_layernorm=req.fuse_skip_layernorm)
        details["level"] = req.optimize
    elif v is Variant.int8_dynamic:
        graph = fused_graph(job.base, job.tmp / "fused", req)
        keep: list[str] = []
        if req.fp32_sensitive:
            nodes = quantizable_nodes(graph / "model.onnx", job.preset)
            if req.fp32_sensitive >= len(nodes):
                raise UserInputError(f"--fp32-sensitive {req.fp32_sensitive} would keep all {len(nodes)} quantizable operators of this "
                                     "model in fp32: nothing would be int8", f"use at most {len(nodes) - 1}, or export without --quantize")
            sens = node_sensitivity(graph, job.sample, job.max_length, job.preset, req.per_channel, job.tmp,
                                    cpu_session(req.fuse_skip_layernorm), job.progress, nodes)
            keep = [r["node"] for r in sens[: req.fp32_sensitive]]
            details.update(fp32_sensitive=req.fp32_sensitive, fp32_nodes=keep,
                           sensitivity={"measure": f"mean |dlogit| vs fp32, {job.sample.name}:{job.sample.split}, that operator alone int8",
                                        "nodes": [{**r, "mean_abs_diff": round(r["mean_abs_diff"], 6)} for r in sens]})
        with _quiet_root_logger():
            quantize_dynamic(graph, dest, job.preset, req.per_channel, req.fp32_first_attention, fp32_nodes=keep)
        details.update(preset=job.preset, per_channel=req.per_channel, graph=req.optimize if graph != job.base else "plain",
                       embeddings="int8-rows", **({"fp32_first_attention": True} if req.fp32_first_attention else {}))
    elif v is Variant.int8_static:
        calib = calibration_batches(job.folder, job.data, req.calibration_pairs, job.max_length)
        with _quiet_root_logger():
            quantize_static(job.base, dest, calib, req.calibration_method, req.per_channel)
        details.update(calibration_method=req.calibration_method, calibration_pairs=req.calibration_pairs, per_channel=req.per_channel)
    elif v is Variant.fp16:
        optimize_onnx(job.base, dest, "O4", for_gpu=True)
        details["level"] = "O4"
    return details


def export_variant(job: _ExportJob, v: str, out_root: Path) -> VariantResult:
    """Build variant ``v``, check its parity against PyTorch, write its manifest and checksums, move it into place."""
    from qadistill.backends import OrtBackend

    t0 = time.perf_counter()
    dest = job.tmp / f"v-{v}"
    details = build_variant(job, v, dest)
    seconds = time.perf_counter() - t0 + (job.base_seconds if v == Variant.onnx else 0.0)
    provider = "CUDAExecutionProvider" if v == Variant.fp16 else "CPUExecutionProvider"
    session = None if v == Variant.fp16 else cpu_session(job.req.fuse_skip_layernorm)
    vs = scores_with(OrtBackend(dest, job.max_length, provider=provider, session=session), job.sample)
    rep = parity(job.reference, vs, job.sample, job.bound_points)
    final = out_root / f"{job.name}-{v}"
    manifest = {
        "qadistill_version": __version__, "source": str(job.folder), "source_name": job.name, "variant": v, "file_name": "model.onnx",
        "max_length": job.max_length, "size_bytes": folder_size(dest), "export_seconds": seconds, "created": time.time(),
        "parity": asdict(rep), **details, **({"ort_session": session} if session else {}),
    }
    result = VariantResult(f"{job.name}-{v}", v, str(final), manifest["size_bytes"], seconds, rep, details)
    if job.strict:  # before it is put in place: a variant --strict refuses is not left on disk
        _check_strict(result, job.bound_points, job.placed)
    atomic_write_text(dest / "qadistill_export.json", json.dumps(manifest, indent=2))
    write_checksums(dest)
    replace_dir(dest, final)
    job.placed.append(result)
    return result


def _check_strict(r: VariantResult, bound_points: float, placed: list) -> None:
    """--strict: a variant past the bound is an error naming the variants already put in place."""
    if r.parity and not r.parity.ok:
        kept = (f" (with --overwrite: {', '.join(r.name for r in placed)} passed and {'is' if len(placed) == 1 else 'are'} "
                "registered)") if placed else ""
        raise ParityError(f"{r.name} loses {-r.parity.map_delta_points:.2f} MAP points on the dev sample (bound {bound_points})",
                          f"try another preset/method, or drop --strict to keep it anyway{kept}")


def export_model(
    name: str,
    folder: Path,
    variants: list[str],
    req: ExportRequest,
    max_length: int = 128,
    data: str = "wikiqa",
    parity_queries: int = PARITY_QUERIES,
    bound_points: float = 1.0,
    strict: bool = False,
    out_root: Path | None = None,
    progress=None,
    overwrite: bool = True,
    on_variant=None,
) -> list[VariantResult]:
    """Export ``folder`` into each variant; returns their results (parity included). The fp32 ONNX export is made once
    and reused as the base of the others. ``overwrite=False`` refuses, before any work, a variant folder that exists
    (the CLI's default). ``on_variant(result)`` runs as each variant is put in place (the CLI registers it then, so a
    stop later leaves no folder on disk that the zoo does not know). With ``strict`` a variant past the bound is not
    put in place: the ParityError names the ones that were."""
    from qadistill.backends import TorchBackend
    from qadistill.progress import NullProgress

    progress = progress or NullProgress()
    folder = Path(folder)
    check_model_folder(folder)
    check_export_request(variants, req)
    _check_sensitive_bound(folder, req.fp32_sensitive)
    preset = auto_preset() if req.preset == "auto" and any(Variant(v).is_int8 for v in variants) else req.preset
    out_root = Path(out_root) if out_root else paths.artifacts_dir()
    made = [d for d in [out_root, *out_root.parents] if not d.exists()]  # folders this export creates (removed if empty)
    _check_out_root(out_root)
    for v in variants:
        dest = out_root / f"{name}-{v}"
        check_replaceable(dest, "export folder")
        if not overwrite and dest.exists():
            raise UserInputError(f"export folder {dest} exists (an earlier export of {name}): replacing it drops its "
                                 "parity record", "add --overwrite to replace it, or --out another folder")
    sample = parity_sample(data, "dev", parity_queries)
    n = len(variants)  # the units: PyTorch's reference scores, then each variant ("5 to do" of 4 variants read as a miscount)
    task = progress.task(f"export {name} (PyTorch reference + {n} variant{'s' if n != 1 else ''})", n + 1)
    ref = scores_with(TorchBackend(folder, max_length, threads=None), sample)
    task.advance(1)
    results: list[VariantResult] = []
    _sweep_dead_exports(out_root)
    try:
        with tempfile.TemporaryDirectory(prefix=f"{EXPORT_TMP}{os.getpid()}-", dir=_mkdir(out_root)) as tmp:
            t0 = time.perf_counter()
            export_onnx(folder, Path(tmp) / "onnx")
            job = _ExportJob(name, folder, req, preset, max_length, data, bound_points, sample, ref, Path(tmp), Path(tmp) / "onnx",
                             time.perf_counter() - t0, progress, strict=strict)
            for v in variants:
                results.append(export_variant(job, v, out_root))
                if on_variant is not None:
                    on_variant(results[-1])
                task.advance(1)
    except Exception as exc:
        for d in made:  # innermost first: an --out folder this run made and left empty goes
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        if _disk_full_under(exc, out_root):
            raise DiskFullError(out_root, f"free space on the disk of {out_root}, or pass --out a folder on a bigger disk") from exc
        raise
    return results


def fused_graph(base: Path, dest: Path, req: ExportRequest) -> Path:
    """The graph int8 dynamic quantizes: ``base`` optimized at ``req.optimize`` (transformer fusions), or ``base`` itself
    where the optimizer does not know this architecture or the level has no CPU transformer fusions (O1; O4 is GPU)."""
    if req.optimize not in ("O2", "O3"):
        return base
    try:
        optimize_onnx(base, dest, req.optimize, fuse_skip_layernorm=req.fuse_skip_layernorm)
    except ExportError:
        shutil.rmtree(dest, ignore_errors=True)
        return base
    return dest


def calibration_batches(folder: Path, data: str, n_pairs: int, max_length: int, batch_size: int = 16) -> list[dict]:
    """Tokenized batches of ``n_pairs`` train pairs (never dev/test) for static calibration, evenly spaced over the split
    so that they span many questions and documents (the first pairs would be ~25 questions)."""
    from transformers import AutoTokenizer

    from qadistill.data import load_dataset

    ds = load_dataset(data, "train")
    step = max(1, len(ds.pairs) // max(1, n_pairs))
    pairs = ds.pairs[::step][:n_pairs]
    tok = AutoTokenizer.from_pretrained(str(folder))
    out = []
    batch_size = min(batch_size, len(pairs)) or 1
    # equal-shape batches only: ONNX Runtime's histogram calibrators (percentile, entropy) stack them
    for i in range(0, len(pairs) - batch_size + 1, batch_size):
        b = pairs[i : i + batch_size]
        enc = tok([p.query for p in b], [p.passage for p in b], padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
        out.append({k: v.astype("int64") for k, v in enc.items()})
    return out


def _cuda_ok() -> bool:
    try:
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:
        return False


EXPORT_TMP = ".qadistill-export-"  # + the exporting process's pid + "-": what a killed export leaves behind


def _sweep_dead_exports(root: Path) -> None:
    """Remove the temp folders of exports whose process is gone (killed before its clean-up ran); a live export's
    folder is left alone."""
    from qadistill.store import _process_alive

    for d in Path(root).glob(f"{EXPORT_TMP}*-*"):
        pid = d.name[len(EXPORT_TMP):].split("-", 1)[0]
        if d.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid), d.stat().st_mtime):
            shutil.rmtree(d, ignore_errors=True)


def _check_sensitive_bound(folder: Path, k: int) -> None:
    """``--fp32-sensitive K`` that keeps every operator in fp32 whatever the graph: refused from config.json before
    any export work (at most six weight products per layer plus the pooler and the classifier). The exact count needs
    the graph; build_variant checks it there, still before the per-operator measurement."""
    import json

    if not k:
        return
    try:
        layers = int(json.loads((Path(folder) / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    most = 6 * layers + 2
    if k >= most:
        raise UserInputError(f"--fp32-sensitive {k}: this {layers}-layer model has at most {most} quantizable operators, so "
                             "nothing would be int8", f"use a K well below {most} (e.g. 4), or export without --quantize")


def _check_out_root(root: Path) -> None:
    """--out must be (or become) a writable folder: said in one line before the reference is scored, not as an OS error
    after it."""
    from qadistill.errors import UserInputError
    from qadistill.fsutil import check_folder_path

    check_folder_path(root, "--out", "pass a folder for the exported variants (it is created if missing)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"--out {root}: cannot create the folder ({exc.strerror or exc})", "pass a folder you can write to") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UserInputError(f"--out {root} is not writable", "pass a folder you can write to")


def _disk_full_under(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` is a write that ran out of space and ``folder``'s disk is the full one (under 64 MB left): a
    library may have written through a temp folder elsewhere, whose path its error names instead."""
    full = isinstance(exc, DiskFullError) or is_disk_full(exc)
    return full and low_on_space(folder if folder.exists() else paths.home())


def _mkdir(p: Path) -> str:
    Path(p).mkdir(parents=True, exist_ok=True)
    return str(p)


def check_registered_exports(registry, label: str, variants: list[str], out_root: Path | None) -> None:
    """A variant the zoo has in another folder is not re-pointed by an --out elsewhere (the registered folder would be
    left behind, unregistered): refused before any work."""
    if registry.store is None:
        return
    root = Path(out_root) if out_root else paths.artifacts_dir()
    for v in variants:
        a = registry.store.artifact(f"{label}-{v}")
        if a is not None and Path(a.path).resolve() != (root / f"{label}-{v}").resolve() and Path(a.path).exists():
            raise UserInputError(f"{label}-{v} is already exported at {a.path}: --out {root} would make another folder the "
                                 f"zoo's {label}-{v}", f"omit --out (add --overwrite to replace it in place), or remove it "
                                 f"first with `qadistill zoo remove {label}-{v} --delete-files`")


def register_exports(registry, label: str, results: list) -> None:
    """Register each exported variant in the zoo as an artifact of ``label`` (its parity and max length from the
    variant's own manifest)."""
    from qadistill.modelref import export_manifest

    for r in results:
        man = export_manifest(Path(r.path))
        registry.add_artifact(r.name, "export", r.path, recipe=label, parent=label,
                              manifest={"variant": r.variant, "size_bytes": r.size_bytes, "parity": man["parity"],
                                        "max_length": man["max_length"], **r.details})
