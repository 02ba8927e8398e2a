"""Training precision: fp32, bf16 autocast, or auto (bf16 where the device has it natively)."""
from __future__ import annotations

import pytest
import torch

from qadistill import doctor, train as train_mod
from qadistill.train import TrainConfig, resolve_precision, train
from tests.conftest import WordTokenizer


def _features(**on):
    base = {k: False for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "arm64_dotprod")}
    return lambda: {**base, **on}


def test_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(doctor, "cpu_features", _features(avx512_bf16=True))
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(doctor, "cpu_features", _features(amx_bf16=True))
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(doctor, "cpu_features", _features(avx2=True, avx512f=True))
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16" and resolve_precision("fp32") == "fp32"  # explicit: as asked
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16")


def test_cpu_features_reads_the_bf16_flags():
    f = doctor.cpu_features()
    assert isinstance(f["avx512_bf16"], bool) and isinstance(f["amx_bf16"], bool)


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_the_loop_trains_in_the_precision_asked_and_records_it(tmp_path, precision, dtype):
    from transformers import BertConfig, BertModel

    from qadistill.data import QAPair
    from qadistill.student import make_student_class

    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    model = make_student_class()(enc, 2)
    seen = []
    model.encoder.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = model.heads.weight.detach().clone()
    pairs = [QAPair(f"q{i // 4}", f"what is {i // 4}", f"p{i}", f"passage {i} text {i % 3}", int(i % 4 == 0)) for i in range(32)]
    cfg = TrainConfig(epochs=1, batch_size=8, max_length=16, loss="listwise", list_size=4, checkpoint_every=0, precision=precision)
    state = train(model, WordTokenizer(), pairs, torch.randn(32, 2).numpy(), cfg, tmp_path / "work")
    assert state["precision"] == precision
    assert seen and seen[0] == dtype  # the training forward ran in that arithmetic
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights (and the saved model) stay fp32
    assert not torch.equal(model.heads.weight, before)


def test_a_recipe_names_only_a_known_precision():
    from pydantic import ValidationError

    from qadistill.recipes import DistillSettings

    assert DistillSettings(precision="auto").precision == "auto"
    with pytest.raises(ValidationError):
        DistillSettings(precision="fp16")
    assert train_mod.train_config(DistillSettings(precision="bf16")).precision == "bf16"
