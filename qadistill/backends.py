"""Inference backends behind one small interface: ``load()``; ``logits(batch_of_pairs) -> np.ndarray[B]``; ``close()``.

Tokenization is the backend's own (``encode``), so it can be timed apart from the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from qadistill.errors import UserInputError


class Backend:
    name = "base"

    def __init__(self, folder: Path, max_length: int = 128, threads: int | None = None, device: str = "cpu") -> None:
        self.folder = Path(folder)
        self.max_length = max_length
        self.threads = threads
        self.device = device
        self.tokenizer = None

    def load(self) -> "Backend":
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        return self

    def encode(self, queries: list[str], passages: list[str]) -> dict:
        return dict(self.tokenizer(queries, passages, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"))

    def run(self, enc: dict):
        raise NotImplementedError

    def logits(self, queries: list[str], passages: list[str]):
        return self.run(self.encode(queries, passages))

    def close(self) -> None:
        pass


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, *a, dtype: str = "fp32", **kw) -> None:
        super().__init__(*a, **kw)
        self.dtype = dtype

    def load(self) -> "TorchBackend":
        import torch
        from transformers import AutoModelForSequenceClassification

        super().load()
        if self.threads:
            torch.set_num_threads(self.threads)
        dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]
        self.model = AutoModelForSequenceClassification.from_pretrained(str(self.folder), torch_dtype=dt).to(self.device).eval()
        return self

    def run(self, enc: dict):
        import torch

        with torch.inference_mode():
            t = {k: torch.from_numpy(v).to(self.device) for k, v in enc.items()}
            out = self.model(**t).logits
            s = out[:, 0] if out.shape[-1] == 1 else out[:, 1] - out[:, 0]
            return s.float().cpu().numpy()


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, *a, file_name: str = "model.onnx", provider: str = "CPUExecutionProvider", **kw) -> None:
        super().__init__(*a, **kw)
        self.file_name = file_name
        self.provider = provider

    def load(self) -> "OrtBackend":
        import onnxruntime as ort

        super().load()
        path = self.folder / self.file_name
        if not path.exists():
            raise UserInputError(f"{path} does not exist", f"run `qadistill export` first, or check {self.folder}")
        avail = ort.get_available_providers()
        if self.provider not in avail:
            raise UserInputError(f"ONNX Runtime provider {self.provider} is not available here (have: {', '.join(avail)})",
                                 "install onnxruntime-gpu for CUDA, or use --device cpu")
        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=[self.provider])
        self.inputs = [i.name for i in self.session.get_inputs()]
        return self

    def run(self, enc: dict):
        feeds = {k: enc[k].astype("int64") for k in self.inputs if k in enc}
        out = self.session.run(None, feeds)[0]
        return out[:, 0] if out.shape[-1] == 1 else out[:, 1] - out[:, 0]


def variant_file(folder: Path) -> str:
    man = Path(folder) / "qadistill_export.json"
    if man.exists():
        return json.loads(man.read_text()).get("file_name", "model.onnx")
    return "model.onnx"


class BiEncoderTorchBackend(Backend):
    """A bi-encoder used to rerank without an index: a batch of B pairs embeds B queries and B passages (mean pooling)
    and returns their cosine similarities."""

    name = "torch-bi"

    def __init__(self, *a, dtype: str = "fp32", **kw) -> None:
        super().__init__(*a, **kw)
        self.dtype = dtype

    def load(self) -> "BiEncoderTorchBackend":
        import torch
        from transformers import AutoModel

        super().load()
        if self.threads:
            torch.set_num_threads(self.threads)
        dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]
        self.model = AutoModel.from_pretrained(str(self.folder), torch_dtype=dt).to(self.device).eval()
        return self

    def encode(self, queries: list[str], passages: list[str]) -> dict:
        kw = dict(padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return {"q": dict(self.tokenizer(queries, **kw)), "p": dict(self.tokenizer(passages, **kw))}

    def run(self, enc: dict):
        import torch

        with torch.inference_mode():
            vecs = []
            for side in ("q", "p"):
                t = {k: torch.from_numpy(v).to(self.device) for k, v in enc[side].items()}
                h = self.model(**t).last_hidden_state
                m = t["attention_mask"].unsqueeze(-1).to(h.dtype)
                vecs.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-6), dim=-1))
            return (vecs[0] * vecs[1]).sum(-1).float().cpu().numpy()
