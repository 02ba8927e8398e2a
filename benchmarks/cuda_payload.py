"""Pack (here) and unpack (on a lent GPU machine) what benchmarks/cuda_bench.sh needs, under a 64 MiB transfer limit.

  python benchmarks/cuda_payload.py pack   STUDENT_FOLDER OUT_DIR [--shape NAME=FOLDER ...] [--data DATA_DIR]
  python benchmarks/cuda_payload.py unpack OUT_DIR WORK_DIR

The student's fp32 safetensors is stored losslessly: its bytes split into four planes (the sign/exponent plane
compresses, the mantissa planes barely) and each plane lzma-compressed; unpack rebuilds the file and checks its sha256.
"Shape" models travel without weights (config + tokenizer only): on the GPU machine they are given random weights of the
same shapes, which is enough to time an architecture and nothing else (their accuracy is never reported).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import shutil
import tarfile
from pathlib import Path

SMALL = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "modules.json",
         "sentence_bert_config.json", "config_sentence_transformers.json", "recipe.toml", "metrics.json", "README.md")


def _planes(data: bytes) -> list[bytes]:
    import numpy as np

    n = len(data) // 4 * 4
    a = np.frombuffer(data[:n], dtype=np.uint8).reshape(-1, 4)
    return [a[:, i].tobytes() for i in range(4)] + [data[n:]]


def pack(student: Path, out: Path, shapes: list[str], data: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    raw = (student / "model.safetensors").read_bytes()
    planes = _planes(raw)
    with (out / "student.weights.xz").open("wb") as fh:
        fh.write(json.dumps({"sha256": hashlib.sha256(raw).hexdigest(), "sizes": [len(p) for p in planes]}).encode() + b"\n")
        for p in planes:
            c = lzma.compress(p, preset=6)
            fh.write(len(c).to_bytes(8, "little") + c)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for f in SMALL:
            if (student / f).exists():
                tar.add(student / f, arcname=f"{student.name}/{f}")
        for spec in shapes:
            name, _, folder = spec.partition("=")
            for f in SMALL:
                if (Path(folder) / f).exists():
                    tar.add(Path(folder) / f, arcname=f"shapes/{name}/{f}")
            if (Path(folder) / "1_Pooling").is_dir():
                tar.add(Path(folder) / "1_Pooling", arcname=f"shapes/{name}/1_Pooling")
        if data:
            tar.add(data / "wikiqa" / "WikiQA-test.tsv.gz", arcname="data/wikiqa/WikiQA-test.tsv.gz")
    (out / "files.tar.xz").write_bytes(buf.getvalue())
    (out / "student_name").write_text(student.name)
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"packed {out}: {total / 2**20:.1f} MiB (weights {len(raw) / 2**20:.1f} MiB raw)")


def unpack(src: Path, work: Path) -> None:
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src / "files.tar.xz") as tar:
        tar.extractall(work)
    name = (src / "student_name").read_text().strip()
    with (src / "student.weights.xz").open("rb") as fh:
        head = json.loads(fh.readline())
        planes = []
        for _ in head["sizes"]:
            n = int.from_bytes(fh.read(8), "little")
            planes.append(lzma.decompress(fh.read(n)))
    a = np.stack([np.frombuffer(p, dtype=np.uint8) for p in planes[:4]], axis=1)
    raw = a.tobytes() + planes[4]
    if hashlib.sha256(raw).hexdigest() != head["sha256"]:
        raise SystemExit("student weights: sha256 mismatch after unpacking")
    (work / name / "model.safetensors").write_bytes(raw)
    for d in sorted((work / "shapes").iterdir()) if (work / "shapes").exists() else []:
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

        cfg = AutoConfig.from_pretrained(str(d))
        cls = AutoModelForSequenceClassification if any("SequenceClassification" in a for a in cfg.architectures or []) else AutoModel
        cls.from_config(cfg).save_pretrained(str(d))  # random weights, the real shapes: for timing only
    print(f"unpacked into {work}: student {name} (sha256 ok), shapes: "
          f"{', '.join(sorted(p.name for p in (work / 'shapes').iterdir())) if (work / 'shapes').exists() else '-'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("student", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--shape", action="append", default=[])
    p.add_argument("--data", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("src", type=Path)
    u.add_argument("work", type=Path)
    a = ap.parse_args()
    if a.cmd == "pack":
        if a.out.exists():
            shutil.rmtree(a.out)
        pack(a.student, a.out, a.shape, a.data)
    else:
        unpack(a.src, a.work)


if __name__ == "__main__":
    main()
