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
from typing import NamedTuple

from qadistill.errors import UserInputError
from qadistill.modelref import export_manifest  # noqa: F401  (re-exported: the one reader of an export's manifest)


class PairTokenizer:
    """Tokenizes (query, passage) pairs into numpy int64 arrays. Uses the Rust ``tokenizers`` library straight from
    ``tokenizer.json`` when present (imports in milliseconds, unlike transformers), else the transformers tokenizer.
    Truncation is longest-first to ``max_length``, as transformers does by default."""

    def __init__(self, folder: Path, max_length: int, hf=None) -> None:
        """``hf``: a transformers tokenizer already loaded (a teacher's or a student's own), used as is. A tokenizer
        that does not load (a damaged or edited file) is a ``ModelFolderError`` naming the folder."""
        from qadistill.errors import QadistillError
        from qadistill.sources import check_max_length

        check_max_length(folder, max_length)
        self.folder = Path(folder)
        self.max_length = max_length
        try:
            self._load(hf)
        except (QadistillError, ImportError, MemoryError, NameError, AttributeError):  # ours, or not the folder's fault
            raise
        except Exception as exc:
            from qadistill.integrity import load_failure

            raise load_failure(self.folder, f"{self.folder}: its tokenizer does not load", exc) from None

    def _load(self, hf) -> None:
        tj = self.folder / "tokenizer.json"
        if hf is not None:
            self.fast, self.hf = None, hf
        elif tj.exists():
            from tokenizers import Tokenizer

            self.fast = Tokenizer.from_file(str(tj))
            self.fast.no_padding()
            self.fast.enable_truncation(max_length=self.max_length, strategy="longest_first")
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
        if self.fast is None:
            self.pad_id = self.hf.pad_token_id or 0
        if hf is None:
            self.unpadded(["a?"], ["a."])  # a vocabulary without [UNK] or special tokens fails here, not mid-ranking

    def _pad(self, encs, pad_to_max: bool, length: int | None = None) -> dict:
        """int64 input_ids / attention_mask / token_type_ids [B, T] of encodings (objects with .ids and .type_ids):
        T is ``length`` when given, else max_length with ``pad_to_max``, else the longest encoding in the batch."""
        import numpy as np

        n = length or (self.max_length if pad_to_max else max((len(e.ids) for e in encs), default=0))
        ids = np.full((len(encs), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.int64)
        types = np.zeros((len(encs), n), dtype=np.int64)
        for i, e in enumerate(encs):
            k = len(e.ids)
            ids[i, :k] = e.ids
            mask[i, :k] = 1
            types[i, :k] = e.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def unpadded(self, queries: list[str], passages: list[str] | None = None) -> list:
        """One encoding per pair (.ids, .type_ids), or per text without ``passages``, truncated to max_length and not
        padded: the real lengths, for ``collate`` to pad each batch only as far as it needs."""
        if self.fast is not None:
            return self.fast.encode_batch(list(zip(queries, passages)) if passages is not None else list(queries))
        args = (queries, passages) if passages is not None else (queries,)
        enc = self.hf(*args, truncation=True, max_length=self.max_length, return_token_type_ids=True)
        return [Encoded(ids, types) for ids, types in zip(enc["input_ids"], enc["token_type_ids"])]

    def lengths(self, queries: list[str], passages: list[str] | None = None) -> list[int]:
        """Each pair's (or, without ``passages``, each text's) length in tokens before truncation, special tokens
        included: the inputs longer than max_length are the ones the model sees cut."""
        if self.fast is not None:
            if getattr(self, "_whole", None) is None:
                from tokenizers import Tokenizer

                self._whole = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
                self._whole.no_padding()
                self._whole.no_truncation()
            texts = list(zip(queries, passages)) if passages is not None else list(queries)
            return [len(e.ids) for e in self._whole.encode_batch(texts)]
        import transformers

        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # "sequence length is longer than the maximum": that is the point
        try:
            args = (queries, passages) if passages is not None else (queries,)
            return [len(ids) for ids in self.hf(*args, truncation=False)["input_ids"]]
        finally:
            transformers.logging.set_verbosity(level)

    def collate(self, encs: list, length: int | None = None) -> dict:
        """A batch of ``unpadded`` encodings padded to its longest, or to ``length`` (a graph with a fixed length)."""
        return self._pad(encs, False, length)

    def pairs(self, queries: list[str], passages: list[str], pad_to_max: bool = False) -> dict:
        if self.fast is not None:
            return self._pad(self.fast.encode_batch(list(zip(queries, passages))), pad_to_max)
        return dict(self.hf(queries, passages, padding="max_length" if pad_to_max else True, truncation=True,
                            max_length=self.max_length, return_tensors="np"))

    def singles(self, texts: list[str], pad_to_max: bool = False) -> dict:
        if self.fast is not None:
            return self._pad(self.fast.encode_batch(texts), pad_to_max)
        return dict(self.hf(texts, padding="max_length" if pad_to_max else True, truncation=True, max_length=self.max_length, return_tensors="np"))


class Encoded(NamedTuple):
    """One tokenized pair, unpadded (the transformers tokenizer's output in the shape of a ``tokenizers`` Encoding)."""

    ids: list[int]
    type_ids: list[int]


def in_batches(order, batch_size: int):
    """Consecutive runs of ``batch_size`` indices along ``order`` (a list of indices): the batches of every scoring
    and embedding loop."""
    order = list(order)
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def length_batches(lengths: list[int], batch_size: int, batch_tokens: int | None = None) -> list[list[int]]:
    """Batches of pair indices, shortest first (stable), each at most ``batch_size`` pairs and, with ``batch_tokens``,
    at most that many tokens once padded to its longest pair (a longer pair alone still makes a batch): the batches
    of real-length scoring, where similar lengths share a batch and nothing is padded beyond its batch's longest."""
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: lengths[j]):
        if cur and (len(cur) >= batch_size or (batch_tokens is not None and (len(cur) + 1) * lengths[i] > batch_tokens)):
            batches.append(cur)
            cur = []
        cur.append(i)
    return batches + [cur] if cur else batches


def count_over_length(tok, max_length: int, queries: list[str], passages: list[str], each_text: bool) -> int:
    """How many of the pairs a model sees cut at ``max_length``: a cross-encoder's pair longer than it or, with
    ``each_text`` (a bi-encoder embeds each text alone), a pair whose query or passage is; each distinct text is
    tokenized once (``tok``: a ``PairTokenizer``)."""
    if each_text:
        texts = list(dict.fromkeys(queries + passages))
        long = {t for t, n in zip(texts, tok.lengths(texts)) if n > max_length}
        return sum(1 for q, p in zip(queries, passages) if q in long or p in long)
    return sum(1 for n in tok.lengths(queries, passages) if n > max_length)


class Backend:
    name = "base"
    score_kind = "logit"  # what score_* return: a relevance logit (a bi-encoder's: "cosine")

    def __init__(self, folder: Path, max_length: int = 128, threads: int | None = None, device: str = "cpu",
                 hf_tokenizer=None) -> None:
        """``hf_tokenizer``: tokenize with this transformers tokenizer instead of the folder's tokenizer.json."""
        self.folder = Path(folder)
        self.max_length = max_length
        self.threads = threads
        self.device = device
        self.hf_tokenizer = hf_tokenizer
        self.tokenizer = None
        self.fixed_length: int | None = None  # a graph that takes only this sequence length (a static ONNX axis)

    def load(self) -> "Backend":
        from qadistill.integrity import verify_checksums

        if not self.folder.is_dir():  # a registered model whose folder was deleted: not "its tokenizer does not load"
            from qadistill.errors import ModelFolderError

            raise ModelFolderError(f"model folder {self.folder} does not exist (deleted or moved)",
                                   "rebuild or re-pull it, or unregister it with `qadistill zoo remove NAME`")
        verify_checksums(self.folder)  # first: a damaged file is named as such, whichever loader would trip on it
        if (self.folder / "config.json").exists():  # then a config that parses into an object (a list read as one crashed)
            from qadistill.sources import read_config

            read_config(self.folder)
        self.tokenizer = PairTokenizer(self.folder, self.max_length, hf=self.hf_tokenizer)
        return self

    def encode(self, queries: list[str], passages: list[str], pad_to_max: bool = False) -> dict:
        if self.fixed_length:
            return self.tokenizer.collate(self.tokenizer.unpadded(queries, passages), self.fixed_length)
        return self.tokenizer.pairs(queries, passages, pad_to_max)

    def real_length_batches(self, queries: list[str], passages: list[str], batch_size: int = 32,
                            batch_tokens: int | None = None) -> list[tuple[list[int], dict]]:
        """(pair indices, model inputs) per batch: every pair tokenized once to its real length (truncated to
        max_length), sorted by length, cut by ``length_batches`` and padded to the batch's longest pair only (or to the
        graph's fixed length)."""
        encs = self.tokenizer.unpadded(queries, passages)
        return [(idx, self.tokenizer.collate([encs[j] for j in idx], self.fixed_length))
                for idx in length_batches([len(e.ids) for e in encs], batch_size, batch_tokens)]

    def score_real_lengths(self, queries: list[str], passages: list[str], batch_size: int = 32,
                           batch_tokens: int | None = None):
        """float32 logits [N] of N pairs, in the pairs' own order, scored at their real lengths
        (``real_length_batches``): what ``rank``, ``load().score`` and bench's real-length mode run."""
        import numpy as np

        out = np.empty(len(queries), dtype=np.float32)
        batches = self.real_length_batches(queries, passages, batch_size, batch_tokens)
        for (idx, _), r in zip(batches, self.run_many([enc for _, enc in batches])):
            out[idx] = r
        return out

    def run(self, enc: dict):
        raise NotImplementedError

    def run_many(self, encs: list[dict]) -> list:
        """Several batches, results in their order: one after the other here (a ``SessionPool`` runs them at once)."""
        return [self.run(e) for e in encs]

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
            r = self.logits([queries[j] for j in idx], [passages[j] for j in idx])
            if r.ndim > 1 and out.ndim == 1:  # a backend with several outputs per pair (StudentBackend heads=True)
                out = np.empty((len(queries), *r.shape[1:]), dtype=np.float32)
            out[idx] = r
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
        self._run_env: FloatEnv | None = None  # the floating-point state the session set on the caller's thread

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
        so, disabled = self.session_options()
        caller = FloatEnv.save()
        try:
            self.session = ort.InferenceSession(str(path), so, providers=[self.provider], disabled_optimizers=disabled)
        except MemoryError:
            raise
        except Exception as exc:  # a truncated or edited graph (InvalidProtobuf, Fail): the folder's fault
            from qadistill.integrity import load_failure

            raise load_failure(self.folder, f"{path}: ONNX Runtime cannot load it", exc) from None
        if caller is not None and denormals_flushed() != caller.flushed:  # making the session flushed this thread
            self._run_env = FloatEnv.remember_flushed()  # what ONNX Runtime set: kept for its runs on this thread
            caller.restore()
        elif caller is not None and not caller.flushed and self._asks_flush(so):
            # ONNX Runtime flushes the creating thread for the process's first session only (std::call_once): a later
            # one runs unflushed on its caller's thread, which is every op of a single-thread session (slow on the
            # padding mask's denormals). Run it with the flushed state the first one set.
            self._run_env = FloatEnv.flushed()
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.fixed_length = self._static_length()
        return self

    def _static_length(self) -> int | None:
        """The sequence length the graph was exported with when that axis is static (it takes nothing else), else None
        (a dynamic axis: Optimum's exports have one). max_length may not exceed it."""
        dims = {i.shape[1] for i in self.session.get_inputs() if len(i.shape) == 2 and isinstance(i.shape[1], int)}
        if not dims:
            return None
        n = max(dims)
        if self.max_length > n:
            raise UserInputError(f"{self.folder / self.file_name} takes sequences of exactly {n} tokens, not up to {self.max_length}",
                                 f"pass --max-length {n} (or max_length={n}), or re-export with a dynamic sequence axis")
        return n

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

    @staticmethod
    def _asks_flush(so) -> bool:
        try:
            return so.get_session_config_entry("session.set_denormal_as_zero") == "1"
        except Exception:  # an entry that was never set raises
            return False

    def run(self, enc: dict):
        feeds = {k: enc[k].astype("int64") for k in self.inputs if k in enc}
        if self._run_env is None:
            return one_logit(self.session.run(None, feeds)[0])
        caller = FloatEnv.save()  # this thread works in ONNX Runtime's pool too: flushed for the run, as its own threads are
        self._run_env.restore()
        try:
            return one_logit(self.session.run(None, feeds)[0])
        finally:
            caller.restore()


_SMALLEST_NORMAL = 2.2250738585072014e-308


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (x86 FTZ/DAZ): the smallest normal double over 3 is 0."""
    return _SMALLEST_NORMAL / 3.0 == 0.0


class FloatEnv:
    """This thread's floating-point environment (C ``fegetenv``: rounding, exception masks and, on x86-64 and arm64,
    the flush-to-zero bits), saved to be restored later. ONNX Runtime's ``session.set_denormal_as_zero`` sets
    flush-to-zero on the thread that makes the session; this puts the caller's state back, without importing torch."""

    def __init__(self, buf, flushed: bool) -> None:
        self.buf, self.flushed = buf, flushed

    _flushed: "FloatEnv | None" = None  # the first flushed state seen in this process (set by an ONNX Runtime session)

    @classmethod
    def remember_flushed(cls) -> "FloatEnv | None":
        """Save this thread's (flushed) environment, and keep it as the process's flushed state."""
        env = cls.save()
        if env is not None and env.flushed:
            cls._flushed = env
        return env

    @classmethod
    def flushed(cls) -> "FloatEnv | None":
        """A flushed environment to run in: the one an earlier session set, else one made with torch (which sets
        flush-to-zero on the calling thread); None where neither is at hand."""
        if cls._flushed is None:
            caller = cls.save()
            try:
                import torch

                torch.set_flush_denormal(True)
                cls.remember_flushed()
            except Exception:
                pass
            finally:
                if caller is not None:
                    caller.restore()
        return cls._flushed

    @staticmethod
    def save() -> "FloatEnv | None":
        """The current environment, or None where the C library offers no fegetenv."""
        import ctypes

        try:
            libc = ctypes.CDLL(None)
            buf = ctypes.create_string_buffer(512)  # larger than any platform's fenv_t
            if libc.fegetenv(buf) != 0:
                return None
        except (OSError, AttributeError):
            return None
        return FloatEnv(buf, denormals_flushed())

    def restore(self) -> None:
        import ctypes

        ctypes.CDLL(None).fesetenv(self.buf)


class SessionPool:
    """Throughput serving: ``sessions`` copies of one ONNX model, each with its share of the threads (one by
    default: single-thread sessions), fed whole batches in parallel from a thread pool (ONNX Runtime releases the GIL
    while it runs). Small models spend much of a multi-thread run on per-operator synchronisation that one thread per
    batch does not pay; the batches are exactly those of one session (``length_batches``), so the scores are the same.
    Quacks like a Backend for scoring (``score_real_lengths``, ``real_length_batches``, ``run``, ``close``)."""

    def __init__(self, make, sessions: int, threads: int | None = None) -> None:
        """``make(threads)`` -> an unloaded OrtBackend; ``threads``: the threads of all sessions together, shared out
        (``threads // sessions`` each, at least 1); default: one thread per session."""
        if sessions < 1:
            raise UserInputError(f"sessions {sessions}: must be at least 1", "e.g. sessions=2 (one per core)")
        self._make, self.sessions = make, sessions
        self.threads = max(1, threads // sessions) if threads else 1  # per session
        self.backends: list[Backend] = []
        self._free = None
        self._pool = None

    def load(self) -> "SessionPool":
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self.backends = [self._make(self.threads).load() for _ in range(self.sessions)]
        first = self.backends[0]
        if not isinstance(first, OrtBackend):
            raise UserInputError(f"sessions need an ONNX Runtime model; {first.folder} runs on {first.name}",
                                 "export it (`qadistill export NAME --quantize dynamic`) or use one session")
        self.folder, self.max_length, self.tokenizer, self.fixed_length = first.folder, first.max_length, first.tokenizer, first.fixed_length
        self.name = first.name
        self._free = queue.SimpleQueue()
        for b in self.backends:
            self._free.put(b)
        self._pool = ThreadPoolExecutor(max_workers=self.sessions, thread_name_prefix="qadistill-session")
        return self

    def run(self, enc: dict):
        """One batch on a free session (blocks while all are busy)."""
        be = self._free.get()
        try:
            return be.run(enc)
        finally:
            self._free.put(be)

    def parallel(self, fn, items) -> list:
        """``fn`` over ``items`` on the pool's threads (as many at once as there are sessions), results in order."""
        return list(self._pool.map(fn, items))

    def run_many(self, encs: list[dict]) -> list:
        """Several batches at once, one per free session; results in the batches' order."""
        return self.parallel(self.run, encs)

    # the Backend's own tokenization and scoring loop (same batches, same scores), its batches spread by run_many
    real_length_batches = Backend.real_length_batches
    encode = Backend.encode
    score_real_lengths = Backend.score_real_lengths

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for b in self.backends:
            b.close()


def score_length_sorted(backend: Backend, pairs, batch_size: int = 32):
    """Logits for ``pairs`` (objects with .query and .passage) at their real lengths, in the pairs' own order."""
    return backend.score_real_lengths([p.query for p in pairs], [p.passage for p in pairs], batch_size)


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
    score_kind = "cosine"  # eval calibrates it into a logit (a fit on WikiQA dev) before it averages teachers

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

    def real_length_batches(self, queries: list[str], passages: list[str], batch_size: int = 32,
                            batch_tokens: int | None = None) -> list[tuple[list[int], dict]]:
        """As ``Backend``'s, with the query and the passage tokenized apart; a pair's length is its longer text's. A
        batch embeds each of its distinct texts once (``t``; ``qi``/``pi``: each pair's query and passage among them):
        a ranked list's query once per batch, not once per passage."""
        import numpy as np

        q, p = self.tokenizer.unpadded(queries), self.tokenizer.unpadded(passages)
        lengths = [max(len(a.ids), len(b.ids)) for a, b in zip(q, p)]
        out = []
        for idx in length_batches(lengths, batch_size, batch_tokens):
            texts: dict[str, int] = {}
            toks = []
            for text, tok in [(queries[j], q[j]) for j in idx] + [(passages[j], p[j]) for j in idx]:
                if text not in texts:
                    texts[text] = len(toks)
                    toks.append(tok)
            out.append((idx, {"t": self.tokenizer.collate(toks), "qi": np.array([texts[queries[j]] for j in idx]),
                              "pi": np.array([texts[passages[j]] for j in idx])}))
        return out

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
            if "t" in enc:  # a real-length batch: its distinct texts, and which are each pair's
                v = self._vectors(enc["t"])
                q, p = v[torch.from_numpy(enc["qi"])], v[torch.from_numpy(enc["pi"])]
            else:
                q, p = self._vectors(enc["q"]), self._vectors(enc["p"])
            return (q * p).sum(-1).float().cpu().numpy()


class StudentBackend(Backend):
    """A multi-head student (``MultiHeadStudent``) while it trains: scored in eval mode (its heads' weighted mean),
    with its own transformers tokenizer, on the device it is on; its train/eval mode is restored after."""

    name = "student"

    def __init__(self, model, hf_tokenizer, max_length: int, heads: bool = False) -> None:
        """``heads``: score gives every head's logits [N, K] instead of the served combination [N]."""
        super().__init__(Path("."), max_length, hf_tokenizer=hf_tokenizer)
        self.model = model
        self.heads = heads

    def run(self, enc: dict):
        import torch

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            t = {k: torch.from_numpy(v).to(device) for k, v in enc.items()}
            out = self.model(**t)
            return (out if self.heads else self.model.score(out)).float().cpu().numpy()

    def score(self, queries: list[str], passages: list[str], batch_size: int = 32, order=None):
        if self.tokenizer is None:
            self.load()
        was_training = self.model.training
        self.model.eval()
        try:
            return super().score(queries, passages, batch_size, order)
        finally:
            self.model.train(was_training)
