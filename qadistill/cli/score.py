from __future__ import annotations

import shlex
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import Device, Format, FormatOpt, err_console, out_console, print_json, table
from qadistill.cli.errors import handle_errors


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@handle_errors
def score(
    teachers: Annotated[str, typer.Argument(help="Comma-separated zoo teachers (the names distill takes).")],
    data: Annotated[str, typer.Option(help="A .jsonl/.tsv/.csv/.parquet file (read as a stream), wikiqa, trecqa or hf:REPO.")],
    split: Annotated[str | None, typer.Option(help="The split of a named dataset (default: test).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder of the manifest (default: $QADISTILL_HOME/scores/DATA).")] = None,
    shard_size: Annotated[int | None, typer.Option(min=1, help="Pairs per shard: the resume and data-parallel unit (default: QADISTILL_SHARD_PAIRS, else 4096).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Pairs (or texts) per forward pass.")] = 32,
    device: Annotated[Device | None, typer.Option(help="Default: this process's GPU when there is one (under torchrun: one per process), else the CPU.")] = None,
    engine: Annotated[Engine, typer.Option(help="local: this process (under torchrun, each process its share); ray: a pool of Ray actors (needs the package's ray extra).")] = Engine.local,
    workers: Annotated[int | None, typer.Option(min=1, help="--engine ray: actors (default: one per GPU of the cluster, else one per CPU).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="--engine ray: the cluster to join (default: RAY_ADDRESS, else a local one started for the run).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Score data with teachers into the cache distill reads: sharded, resumable, data-parallel under torchrun."""
    from qadistill.errors import InterruptedRunError
    from qadistill.progress import RichProgress
    from qadistill.registry import Registry
    from qadistill.scoring import run_score
    from qadistill.store import Store
    from qadistill.stream import open_pairs
    from qadistill.teachers import teacher_from_recipe

    _check_engine(engine, workers, ray_address)  # --engine ray without Ray fails here, before any name or model
    names = [t.strip() for t in teachers.split(",") if t.strip()]
    reg = Registry(store=Store.open())
    recipes = [reg.recipe(n, "teacher") for n in names]  # unknown names fail before any data is read
    stream = open_pairs(data, split)
    ray = None
    if engine is Engine.ray:  # the actors pick their devices; the driver only reads and writes the store
        from qadistill.rayscore import RayOptions

        ray = RayOptions(tuple(recipes), batch_size, workers, ray_address, device.value if device else None)
    dev = "cpu" if ray else _device(device.value if device else None)
    scorers = [teacher_from_recipe(r, reg, batch_size) for r in recipes]  # type: ignore[arg-type]
    for t in scorers:
        t.device = dev
    try:
        with RichProgress() as prog:
            res = run_score(scorers, stream, out, shard_size, prog, ray)
    except KeyboardInterrupt as exc:
        raise InterruptedRunError("interrupted: every finished shard is kept", "run the same command again: it scores only the rest", exc) from None
    if res.manifest is None:  # a process other than 0 of a launch: process 0 reports
        return
    if fmt is Format.json:
        print_json(res.to_dict())
        return
    out_console().print(table(f"score {stream.label}", ["field", "value"], [
        ["teachers", ", ".join(res.teachers)], ["pairs", res.pairs], ["shards", f"{res.shards} per teacher"],
        ["scored now", f"{res.scored} (the rest were cached)"], ["seconds", f"{res.seconds:.1f}"],
        ["pairs/s", f"{res.pairs_per_s:.1f}"], ["processes", f"{res.processes} ({res.engine})"], ["manifest", res.manifest],
    ]))
    err_console().print(f"next: qadistill distill --teachers {shlex.quote(','.join(res.teachers))} --data {shlex.quote(data)} (reads these scores)")


def _check_engine(engine: Engine, workers: int | None, ray_address: str | None) -> None:
    from qadistill.errors import UserInputError

    if engine is Engine.ray:
        from qadistill.rayscore import check_address, check_launch, require_ray

        require_ray()
        check_launch()
        check_address(ray_address)
    elif workers is not None or ray_address is not None:
        flag = "--workers" if workers is not None else "--ray-address"
        raise UserInputError(f"{flag} is an option of --engine ray", f"add --engine ray (or drop {flag}; under torchrun --nproc_per_node sets the processes)")


def _device(choice: str | None) -> str:
    """The device this process scores on: under a launcher, its own GPU (accelerate's PartialState().device)."""
    import os

    if choice == "cpu":
        return "cpu"
    import torch

    from qadistill.errors import UserInputError

    if not torch.cuda.is_available():
        if choice == "cuda":
            raise UserInputError("--device cuda: no CUDA GPU is visible", "use --device cpu (or auto)")
        return "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from qadistill import parallel

        return str(parallel.state().device)
    return "cuda"
