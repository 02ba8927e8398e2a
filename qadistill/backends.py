"""Inference backends: the only code that runs a model. One small interface: ``load()``; ``logits(queries, passages)
-> np.ndarray[B]`` for one batch; ``score(queries, passages, batch_size, order)`` for any number of pairs (the one
batched scoring loop, length-sorted where the caller passes an order); ``embed(texts)`` for a bi-encoder; ``close()``.

Backends: PyTorch cross-encoder and bi-encoder (``TorchBackend``, ``BiEncoderTorchBackend``), ONNX Runtime CPU/CUDA
(``OrtBackend``) and a multi-head student being trained, in eval mode (``StudentBackend``). Teachers, the logit cache,
``rank``/``load``, eval, the export parity check and the bench worker all score through them.

Tokenization is the backend's own (``encode``), so it can be timed apart from the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from qadistill.errors import UserInputError
from qadistill.modelref import export_manifest  # noqa: F401  (re-exported: the one reader of an export's manifest)


class PairTokenizer:
    """Tokenizes (query, passage) pairs into numpy int64 arrays. Uses the Rust ``tokenizers`` library straight from
    ``tokenizer.json`` when present (imports in milliseconds, unlike transformers), else the transformers tokenizer.
    Truncation is longest-first to ``max_length``, as transformers does by default."""

    def __init__(self, folder: Path, max_length: int, hf=None) -> None:
        """``hf``: a transformers tokenizer already loaded (a teacher's or a student's own), used as is."""
        from qadistill.sources import check_max_length

        check_max_length(folder, max_length)
        self.folder = Path(folder)
        self.max_length = max_length
        tj = self.folder / "tokenizer.json"
        if hf is not None:
            self.fast, self.hf = None, hf
        elif tj.exists():
            from tokenizers import Tokenizer

            self.fast = Tokenizer.from_file(str(tj))
            self.fast.no_padding()
            self.fast.enable_truncation(max_length=max_length, strategy="longest_first")
            cfg = self.folder / "tokenizer_config.json"
            self.lower = False
            self.pad_id = self.fast.token_to_id("[PAD]") if self.fast.token_to_id("[PAD]") is not None else 0
            if cfg.exists():
                pad = json.loads(cfg.read_text()).get("pad_token")
                if isinstance(pad, str) and self.fast.token_to_id(pad) is not None:
                    self.pad_id = self.fast.token_to_id(pad)
            self.hf = None
        else:
            from transformers import AutoTokenizer

            self.fast = None
            self.hf = AutoTokenizer.from_pretrained(str(self.folder))

    def _pad(self, encs, pad_to_max: bool) -> dict:
        import numpy as np

        n = self.max_length if pad_to_max else max((len(e.ids) for e in encs), default=0)
        ids = np.full((len(encs), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.int64)
        types = np.zeros((len(encs), n), dtype=np.int64)
        for i, e in enumerate(encs):
            k = len(e.ids)
            ids[i, :k] = e.ids
            mask[i, :k] = 1
            types[i, :k] = e.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def pairs(self, queries: list[str], passages: list[str], pad_to_max: bool = False) -> dict:
        if self.fast is not None:
            return self._pad(self.fast.encode_batch(list(zip(queries, passages))), pad_to_max)
        return dict(self.hf(queries, passages, padding="max_length" if pad_to_max else True, truncation=True,
                            max_length=self.max_length, return_tensors="np"))

    def singles(self, texts: list[str], pad_to_max: bool = False) -> dict:
        if self.fast is not None:
            return self._pad(self.fast.encode_batch(texts), pad_to_max)
        return dict(self.hf(texts, padding="max_length" if pad_to_max else True, truncation=True, max_length=self.max_length, return_tensors="np"))


def in_batches(order, batch_size: int):
    """Consecutive runs of ``batch_size`` indices along ``order`` (a list of indices): the batches of every scoring
    and embedding loop."""
    order = list(order)
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def char_length_order(queries: list[str], passages: list[str]) -> list[int]:
    """Pair indices by the characters of query + passage, shortest first (stable): similar lengths per batch."""
    return sorted(range(len(queries)), key=lambda i: len(queries[i]) + len(passages[i]))


class Backend:
    name = "base"

    def __init__(self, folder: Path, max_length: int = 128, threads: int | None = None, device: str = "cpu",
                 hf_tokenizer=None) -> None:
        """``hf_tokenizer``: tokenize with this transformers tokenizer instead of the folder's tokenizer.json."""
        self.folder = Path(folder)
        self.max_length = max_length
        self.threads = threads
        self.device = device
        self.hf_tokenizer = hf_tokenizer
        self.tokenizer = None

    def load(self) -> "Backend":
        self.tokenizer = PairTokenizer(self.folder, self.max_length, hf=self.hf_tokenizer)
        return self

    def encode(self, queries: list[str], passages: list[str], pad_to_max: bool = False) -> dict:
        return self.tokenizer.pairs(queries, passages, pad_to_max)

    def run(self, enc: dict):
        raise NotImplementedError

    def logits(self, queries: list[str], passages: list[str]):
        """[B] logits of one batch."""
        return self.run(self.encode(queries, passages))

    def score(self, queries: list[str], passages: list[str], batch_size: int = 32, order=None):
        """float32 logits [N] of N pairs, in the pairs' own order: the one batched scoring loop. Batches are runs of
        ``batch_size`` along ``order`` (pair indices, e.g. length-sorted to cut padding; default: the pairs' order).
        Batch composition matters to int8 dynamic, whose activation scales are per batch."""
        import numpy as np

        out = np.empty(len(queries), dtype=np.float32)
        for idx in in_batches(range(len(queries)) if order is None else order, batch_size):
            out[idx] = self.logits([queries[j] for j in idx], [passages[j] for j in idx])
        return out

    def close(self) -> None:
        pass


def one_logit(out):
    """[B] relevance logits from a model's [B, 1] or [B, 2] outputs (two classes: logit(yes) - logit(no))."""
    return out[:, 0] if out.shape[-1] == 1 else out[:, 1] - out[:, 0]


class _PyTorchBackend(Backend):
    """A PyTorch model in inference mode, at ``dtype`` (fp32, fp16, bf16) on ``device``."""

    def __init__(self, *a, dtype: str = "fp32", **kw) -> None:
        super().__init__(*a, **kw)
        self.dtype = dtype

    def _load_model(self, auto_class, **kwargs):
        import torch

        from qadistill.integrity import load_pretrained

        super().load()
        if self.threads:
            torch.set_num_threads(self.threads)
        dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]
        self.model = load_pretrained(auto_class, self.folder, **kwargs, **dtype_kwarg(dt)).to(self.device).eval()
        return self.model


class TorchBackend(_PyTorchBackend):
    name = "torch"

    def load(self) -> "TorchBackend":
        from transformers import AutoModelForSequenceClassification

        self._load_model(AutoModelForSequenceClassification)
        import inspect

        self.inputs = set(inspect.signature(self.model.forward).parameters)
        return self

    def run(self, enc: dict):
        import torch

        with torch.inference_mode():
            t = {k: torch.from_numpy(v).to(self.device) for k, v in enc.items() if k in self.inputs}
            return one_logit(self.model(**t).logits).float().cpu().numpy()


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, *a, file_name: str = "model.onnx", provider: str = "CPUExecutionProvider", session: dict | None = None,
                 **kw) -> None:
        """``session``: ONNX Runtime session settings ({"config": {key: value}, "disabled_optimizers": [...]}); by default
        those the export manifest (qadistill_export.json) records for this variant; applied on the CPU provider only."""
        super().__init__(*a, **kw)
        self.file_name = file_name
        self.provider = provider
        self.session_settings = session
        self._flush = False  # the session flushes denormals (its settings say so)

    def load(self) -> "OrtBackend":
        import onnxruntime as ort

        from qadistill.integrity import verify_checksums

        super().load()
        path = self.folder / self.file_name
        if not path.exists():
            raise UserInputError(f"{path} does not exist", f"run `qadistill export` first, or check {self.folder}")
        verify_checksums(self.folder)
        avail = ort.get_available_providers()
        if self.provider not in avail:
            raise UserInputError(f"ONNX Runtime provider {self.provider} is not available here (have: {', '.join(avail)})",
                                 "install onnxruntime-gpu for CUDA, or use --device cpu")
        so, disabled = self.session_options()
        before = denormals_flushed()
        self.session = ort.InferenceSession(str(path), so, providers=[self.provider], disabled_optimizers=disabled)
        self._flush = self._flushes(so)
        if denormals_flushed() != before:  # making the session set it on this (the caller's) thread: undo that
            set_flush_denormals(before)
        self.inputs = [i.name for i in self.session.get_inputs()]
        return self

    @staticmethod
    def _flushes(so) -> bool:
        try:
            return so.get_session_config_entry("session.set_denormal_as_zero") == "1"
        except RuntimeError:  # not set
            return False

    def session_options(self):
        """(SessionOptions, disabled optimizers) this backend runs its variant with: the thread count and, on the CPU
        provider, the session settings (explicit, else the export manifest's)."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        settings = self.session_settings if self.session_settings is not None else export_manifest(self.folder).get("ort_session") or {}
        if self.provider != "CPUExecutionProvider":
            settings = {}
        for key, value in settings.get("config", {}).items():
            so.add_session_config_entry(key, value)
        return so, settings.get("disabled_optimizers") or None

    def run(self, enc: dict):
        feeds = {k: enc[k].astype("int64") for k in self.inputs if k in enc}
        if not self._flush or denormals_flushed():
            return one_logit(self.session.run(None, feeds)[0])
        set_flush_denormals(True)  # this thread works in ONNX Runtime's pool too: flushed for the run, as its own threads are
        try:
            return one_logit(self.session.run(None, feeds)[0])
        finally:
            set_flush_denormals(False)


_SMALLEST_NORMAL = 2.2250738585072014e-308


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (x86 FTZ/DAZ): the smallest normal double over 3 is 0."""
    return _SMALLEST_NORMAL / 3.0 == 0.0


def set_flush_denormals(on: bool) -> None:
    """Flush denormals to zero on this thread, or not (what ONNX Runtime's ``session.set_denormal_as_zero`` does)."""
    import torch

    torch.set_flush_denormal(on)


def score_length_sorted(backend: Backend, pairs, batch_size: int = 32):
    """Logits for ``pairs`` (objects with .query and .passage), scored in batches of similar length (less padding), in
    the pairs' own order."""
    qs, ps = [p.query for p in pairs], [p.passage for p in pairs]
    return backend.score(qs, ps, batch_size, order=char_length_order(qs, ps))


def mean_pool(hidden, attention_mask):
    """[B, T, H] token states and their [B, T] attention mask -> [B, H]: the mean over the real tokens."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


def dtype_kwarg(dt) -> dict:
    """``from_pretrained``'s dtype argument: ``dtype`` from transformers 4.56 (``torch_dtype`` is deprecated there and
    warns on every load), ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dt} if (major, minor) >= (4, 56) else {"torch_dtype": dt}


def variant_file(folder: Path) -> str:
    return export_manifest(folder).get("file_name", "model.onnx")


class BiEncoderTorchBackend(_PyTorchBackend):
    """A bi-encoder: ``embed`` gives L2-normalised text embeddings (``pooling``: mean over the real tokens, or the
    first token's state for "cls"); used to rerank without an index, a batch of B pairs embeds B queries and B
    passages and returns their cosine similarities."""

    name = "torch-bi"

    def __init__(self, *a, pooling: str = "mean", **kw) -> None:
        super().__init__(*a, **kw)
        self.pooling = pooling

    def load(self) -> "BiEncoderTorchBackend":
        import inspect

        from transformers import AutoConfig, AutoModel

        from qadistill.integrity import ENCODER_POOLED_BY_US

        cfg = AutoConfig.from_pretrained(str(self.folder))
        kw = {"add_pooling_layer": False} if cfg.model_type in ("bert", "mpnet", "roberta", "xlm-roberta") else {}
        self._load_model(AutoModel, **ENCODER_POOLED_BY_US, **kw)  # pooled by us: the pooler is unused
        self.inputs = set(inspect.signature(self.model.forward).parameters)
        return self

    def encode(self, queries: list[str], passages: list[str], pad_to_max: bool = False) -> dict:
        return {"q": self.tokenizer.singles(queries, pad_to_max), "p": self.tokenizer.singles(passages, pad_to_max)}

    def _vectors(self, enc: dict):
        import torch

        t = {k: torch.from_numpy(v).to(self.device) for k, v in enc.items() if k in self.inputs}
        h = self.model(**t).last_hidden_state
        v = h[:, 0] if self.pooling == "cls" else mean_pool(h, t["attention_mask"])
        return torch.nn.functional.normalize(v, dim=-1)

    def embed(self, texts: list[str], batch_size: int = 32):
        """float32 [N, H] embeddings of ``texts``, in batches of ``batch_size`` in the texts' order."""
        import numpy as np
        import torch

        with torch.inference_mode():
            outs = [self._vectors(self.tokenizer.singles([texts[j] for j in idx])).float().cpu().numpy()
                    for idx in in_batches(range(len(texts)), batch_size)]
        return np.concatenate(outs, axis=0)

    def run(self, enc: dict):
        import torch

        with torch.inference_mode():
            q, p = self._vectors(enc["q"]), self._vectors(enc["p"])
            return (q * p).sum(-1).float().cpu().numpy()


class StudentBackend(Backend):
    """A multi-head student (``MultiHeadStudent``) while it trains: scored in eval mode (its heads' weighted mean),
    with its own transformers tokenizer, on the device it is on; its train/eval mode is restored after."""

    name = "student"

    def __init__(self, model, hf_tokenizer, max_length: int) -> None:
        super().__init__(Path("."), max_length, hf_tokenizer=hf_tokenizer)
        self.model = model

    def run(self, enc: dict):
        import torch

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            t = {k: torch.from_numpy(v).to(device) for k, v in enc.items()}
            return self.model.score(self.model(**t)).float().cpu().numpy()

    def score(self, queries: list[str], passages: list[str], batch_size: int = 32, order=None):
        if self.tokenizer is None:
            self.load()
        was_training = self.model.training
        self.model.eval()
        try:
            return super().score(queries, passages, batch_size, order)
        finally:
            self.model.train(was_training)
