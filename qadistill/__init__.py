"""qadistill: distil several question-answering relevance teachers into one light student (MKDM), then compress and
benchmark it. The package imports nothing heavy at import time; torch, transformers and onnxruntime are loaded by the
functions that need them."""

__version__ = "0.1.0"

__all__ = ["__version__", "load", "Ranked", "Reranker"]


def __getattr__(name: str):
    # lazy: `import qadistill` stays instant; the API module loads on first use
    if name in ("load", "Ranked", "Reranker"):
        from qadistill import api

        return getattr(api, name)
    raise AttributeError(f"module 'qadistill' has no attribute {name!r}")
