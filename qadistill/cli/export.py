from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import Format, FormatOpt, err_console, out_console, print_json, styled, table, warn
from qadistill.cli.errors import handle_errors
from qadistill.modelref import MIN_TRUSTED_PARITY_QUERIES, PARITY_QUERIES, Variant


class Optimize(str, Enum):
    O1 = "O1"
    O2 = "O2"
    O3 = "O3"
    O4 = "O4"


class Quantize(str, Enum):
    none = "none"
    dynamic = "dynamic"
    static = "static"


class Preset(str, Enum):
    auto = "auto"
    avx2 = "avx2"
    avx512 = "avx512"
    avx512_vnni = "avx512_vnni"
    arm64 = "arm64"


class CalibrationMethod(str, Enum):
    percentile = "percentile"
    minmax = "minmax"
    entropy = "entropy"


@handle_errors
def export(
    name: Annotated[str, typer.Argument(help="A built student/teacher (zoo name) or a model folder.")],
    optimize: Annotated[Optimize | None, typer.Option(help="Also an ORT-optimized variant at this level (O4: GPU).")] = None,
    quantize: Annotated[Quantize, typer.Option(help="int8 quantization.")] = Quantize.none,
    preset: Annotated[Preset, typer.Option(help="int8 preset (auto: the best this CPU supports).")] = Preset.auto,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also an fp16 variant (CUDA only).")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Every variant that makes sense on this machine.")] = False,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="int8: one scale per output channel of each weight (default: per tensor).")] = False,
    fp32_first_attention: Annotated[bool, typer.Option("--fp32-first-attention", help="int8 dynamic: keep the first layer's attention in fp32 (it reads the embedding output, whose outlier channels cost int8 the most; slower at batch 1, same at batch 32).")] = False,
    fp32_sensitive: Annotated[int, typer.Option("--fp32-sensitive", min=0, help="int8 dynamic: keep in fp32 the K operators whose int8 alone moves the scores most on the --data dev parity sample (measured per operator first; the manifest lists them and every operator's figure).")] = 0,
    fuse_skip_layernorm: Annotated[bool, typer.Option("--fuse-skip-layernorm", help="CPU: keep ONNX Runtime's fused SkipLayerNormalization (default: unfused; the fused kernel measured 2-3x slower here, benchmarks/skip_layernorm.py checks a machine).")] = False,
    calibration_method: Annotated[CalibrationMethod, typer.Option(help="Static int8: how activation ranges are chosen.")] = CalibrationMethod.percentile,
    calibration_pairs: Annotated[int, typer.Option(min=1, help="Static int8: train pairs to calibrate on.")] = 256,
    data: Annotated[str, typer.Option(help="Data for calibration (train split) and parity (dev split).")] = "wikiqa",
    parity_queries: Annotated[int, typer.Option(min=1, help="Dev queries in the parity sample (all of them where the split has fewer).")] = PARITY_QUERIES,
    max_map_drop: Annotated[float, typer.Option(min=0, help="MAP points a variant may lose before it is flagged.")] = 1.0,
    max_length: Annotated[int | None, typer.Option(min=8)] = None,
    strict: Annotated[bool, typer.Option(help="Fail when a variant loses more than --max-map-drop.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the variants (default: $QADISTILL_HOME/artifacts).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace variants exported before (their parity records go with them).")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Export to ONNX with Optimum, optimize with ONNX Runtime, quantize to int8 (dynamic/static), fp16 for GPU;
    each variant gets a parity check against PyTorch and is registered in the zoo as NAME-VARIANT."""
    from qadistill.compress import (ExportRequest, _cuda_ok, check_export_request, check_registered_exports, default_variants,
                                    export_model, register_exports)
    from qadistill.errors import UserInputError
    from qadistill.progress import RichProgress
    from qadistill.registry import Registry
    from qadistill.store import Store

    quantize, preset, calibration_method = quantize.value, preset.value, calibration_method.value
    optimize = optimize.value if optimize else None
    if (fp16 or optimize == "O4") and not _cuda_ok():
        what = "--fp16" if fp16 else "--optimize O4"
        raise UserInputError(f"{what} needs a CUDA GPU and onnxruntime-gpu; none is available here",
                             "drop it (CPU variants: --optimize O2 --quantize dynamic), or run `qadistill doctor` on a GPU machine")
    reg = Registry(store=Store.open())
    folder, label, ml = _resolve(name, reg)
    if all_:
        variants = default_variants(_cuda_ok())
    else:
        variants = _variants(optimize, quantize, fp16)
    req = ExportRequest(variant="", optimize=optimize or "O2", preset=preset, calibration_method=calibration_method,
                        calibration_pairs=calibration_pairs, per_channel=per_channel, fuse_skip_layernorm=fuse_skip_layernorm,
                        fp32_first_attention=fp32_first_attention, fp32_sensitive=fp32_sensitive)
    check_export_request(variants, req)  # options first: an option no variant reads fails before the data loads
    check_registered_exports(reg, label, variants, out)
    _check_data(data, parity_queries, Variant.int8_static in variants)
    from qadistill.locks import artifact_lock

    from qadistill.errors import InterruptedRunError

    placed: list[str] = []

    def register(result) -> None:  # each variant as it is put in place: a stop later leaves none unknown to the zoo
        register_exports(reg, label, [result])
        placed.append(result.name)

    try:
        with artifact_lock(f"{label}.export", "exports of", "wait for that export to finish", shown=label), RichProgress() as prog:  # one export of a model at a time
            results = export_model(label, folder, variants, req, max_length=max_length or ml, data=data, parity_queries=parity_queries,
                                   bound_points=max_map_drop, strict=strict, out_root=out, progress=prog, overwrite=overwrite,
                                   on_variant=register)
    except KeyboardInterrupt as exc:
        if not placed:
            raise InterruptedRunError("interrupted before any variant was exported", "run the same command again", exc) from None
        raise InterruptedRunError(f"interrupted after {', '.join(placed)} {'was' if len(placed) == 1 else 'were'} exported and "
                                  "registered", "run the same command plus --overwrite to export every variant (those again too)",
                                  exc) from None
    if fmt is Format.json:
        print_json([r.to_dict() for r in results])
        return
    _render(results, label, max_map_drop)


def _render(results: list, label: str, max_map_drop: float) -> None:
    """Each variant's size and parity (red past the bound), and the warnings."""
    rows = []
    for r in results:
        p = r.parity
        style = "green" if p.ok else "red"
        rows.append([r.name, r.variant, f"{r.size_bytes / 1e6:.1f} MB", f"{p.max_abs_diff:.2e}", f"{p.map_reference:.4f}",
                     styled(f"[{style}]{{}}[/]", f"{p.map_variant:.4f} ({p.map_delta_points:+.2f})"), _settings(r.details)])
    out_console().print(table(f"export {label} (parity on {results[0].parity.queries} dev queries, bound {max_map_drop} MAP points)",
                              ["artifact", "variant", "size", "max |Δlogit|", "MAP torch", "MAP variant (Δ points)", "settings"], rows))
    if any(not r.parity.ok for r in results):
        err_console().print(styled("[red]variants in red lose more than the bound[/]: try --preset/--calibration-method, or --strict to fail"))
    shaky = [r.variant for r in results if r.parity.unstable]
    if shaky:
        err_console().print(warn(f"{', '.join(shaky)}: max |Δlogit| is at least half the spread of the model's own logits "
                            f"(σ {results[0].parity.reference_std:.2e}): the MAP delta mostly reflects near-ties broken differently, not the "
                            "variant; a longer-trained model's logits spread further"))



def _settings(details: dict) -> str:
    """The settings column: how the variant was made; the fp32 operators by their short names (the per-operator
    sensitivity figures are in the manifest and the JSON output)."""
    shown = {k: v for k, v in details.items() if k != "sensitivity"}
    if "fp32_nodes" in shown:
        shown["fp32_nodes"] = " ".join("/".join(n.strip("/").split("/")[-3:]) for n in shown["fp32_nodes"])
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _variants(optimize: str | None, quantize: str, fp16: bool) -> list[str]:
    """The variants the options ask for (Variant values), in export order."""
    quantized = {"dynamic": [Variant.int8_dynamic], "static": [Variant.int8_static]}.get(quantize, [])
    wanted = [Variant.onnx] + ([Variant.optimized] if optimize else []) + quantized + ([Variant.fp16] if fp16 else [])
    return [v.value for v in wanted]


def _check_data(data: str, parity_queries: int, calibrate: bool) -> None:
    """The parity sample (dev) and calibration pairs (train) are loaded before the export, so bad data fails first."""
    from qadistill.compress import parity_sample
    from qadistill.data import load_dataset
    from qadistill.errors import UserInputError

    sample = parity_sample(data, "dev", parity_queries)
    if not sample.pairs:
        raise UserInputError(f"--data {data}: its dev split has no query with both a correct and a wrong candidate, "
                             "so the parity check cannot measure MAP", "pass labelled ranking data, e.g. --data wikiqa")
    n = len({p.query_id for p in sample.pairs})
    if n < MIN_TRUSTED_PARITY_QUERIES:
        err_console().print(warn(f"warning: the parity sample of --data {data} has {n} dev quer{'y' if n == 1 else 'ies'}, fewer "
                            f"than {MIN_TRUSTED_PARITY_QUERIES}: its MAP delta bounds nothing, so `rank`/`load` with backend "
                            "auto will not serve these variants (name the backend to use them)"), soft_wrap=True)
    if calibrate:
        load_dataset(data, "train")


def _resolve(name: str, reg) -> tuple[Path, str, int]:
    """(folder, label, max length) of what to export: a folder (labelled by its name), a built artifact or a recipe."""
    ref = reg.resolve(name, use="export a built student or a cross-encoder teacher")
    if ref.kind == "folder":
        import re

        return ref.folder, re.sub(r"[^A-Za-z0-9._-]+", "-", ref.folder.name).strip(".-") or "model", 128
    return ref.folder, name, int(ref.max_length if ref.max_length is not None else 128)
