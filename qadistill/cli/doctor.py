from __future__ import annotations

import typer

from qadistill.cli._common import Format, FormatOpt, out_console, print_json, styled, table
from qadistill.cli.errors import handle_errors


@handle_errors
def doctor(fmt: FormatOpt = Format.table) -> None:
    """Check the installation: libraries, CPU features, ONNX Runtime providers, CUDA, paths, packaged models."""
    from qadistill.doctor import run_doctor

    rep = run_doctor()
    if fmt is Format.json:
        print_json(rep.to_dict())
    else:
        con = out_console()
        rows = [[styled("[green]ok[/]" if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]-[/]")), c.name, c.value, c.fix or ""] for c in rep.checks]
        con.print(table("qadistill doctor", ["", "check", "value", "fix"], rows))
        info = rep.info
        feats = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in info["cpu_features"].items())
        rows = [
            ["QADISTILL_HOME", info["qadistill_home"]],
            ["cache", info["cache_dir"]],
            ["HF cache", info["hf_hub_cache"]],
            ["HF offline", "yes" if info["hf_offline"] else "no"],
            ["data dir", info["data_dir"] or "not found (set QADISTILL_DATA_DIR)"],
            ["python", info["python"]],
            ["cpu", f"{info['cpu']} ({info['cpu_count']} cores)"],
            ["cpu features", feats],
        ]
        con.print(table(None, ["setting", "value"], rows))
    if not rep.ok:
        failed = [c.name for c in rep.checks if c.required and not c.ok]
        from qadistill.cli.errors import report

        report(f"failed: {', '.join(failed)}", next(c.fix for c in rep.checks if c.required and not c.ok))
        raise typer.Exit(1)
