"""The exporter that needs no Optimum (torch.onnx + the ONNX Runtime optimizer), the choice between it and Optimum,
the int8 presets written out from Optimum's, and a saved student loaded by sentence-transformers' CrossEncoder.

Where Optimum is installed (the pinned line) the two exporters are compared with each other; where it is not (the
current line: transformers 5) the torch path is what `qadistill export` runs and tests/test_export.py covers it too."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from conftest import make_tiny_model, tiny_jsonl
from qadistill import onnx_export
from qadistill.errors import ExportError, UserInputError

HAVE_OPTIMUM = onnx_export._optimum_status() is None
needs_optimum = pytest.mark.skipif(not HAVE_OPTIMUM, reason="compares against Optimum, which is not installed on this line")

QUERIES = ["who wrote hamlet?", "where is paris?", "what is the capital of france and where is the river?"]
PASSAGES = ["shakespeare wrote hamlet.", "paris is a city in france, a big city on a long river.", "the king."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("onnx-export") / "model", "cross")


def torch_logits(folder: Path, queries, passages):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    enc = tok(queries, passages, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[:, 0].numpy(), {k: v.numpy() for k, v in enc.items()}


def ort_logits(model_path: Path, enc: dict):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: enc[n].astype("int64") for n in names})[0][:, 0], names, [o.name for o in sess.get_outputs()]


def test_torch_export_has_optimums_io_and_dynamic_batch_and_length(tiny, tmp_path):
    """One graph serves every batch size and length (traced on 2 pairs), with the input/output names the ORT backends
    read; logits within 1e-5 of PyTorch."""
    onnx_export.torch_export(tiny, tmp_path / "onnx")
    assert {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "onnx").iterdir()}
    for n in (1, 3):
        ref, enc = torch_logits(tiny, QUERIES[:n], PASSAGES[:n])
        got, inputs, outputs = ort_logits(tmp_path / "onnx" / "model.onnx", enc)
        assert inputs == ["input_ids", "attention_mask", "token_type_ids"] and outputs == ["logits"]
        assert got.shape == (n,) and abs(got - ref).max() < 1e-5, (n, got, ref)


@needs_optimum
def test_torch_export_and_optimization_give_optimums_graph(tiny, tmp_path, monkeypatch):
    """Same opset, inputs, outputs and fused operator set as Optimum + ORTOptimizer, and the same logits."""
    import onnx

    ops, logits = {}, {}
    _, enc = torch_logits(tiny, QUERIES, PASSAGES)
    for name in ("optimum", "torch"):
        monkeypatch.setenv(onnx_export.EXPORTER_ENV, name)
        assert onnx_export.export(tiny, tmp_path / name / "onnx").name == name
        onnx_export.optimize(tmp_path / name / "onnx", tmp_path / name / "opt", "O2", fuse_skip_layernorm=False)
        for v in ("onnx", "opt"):
            g = onnx.load(str(tmp_path / name / v / "model.onnx"))
            ops[name, v] = ({o.domain: o.version for o in g.opset_import}[""], sorted({n.op_type for n in g.graph.node}))
            logits[name, v] = ort_logits(tmp_path / name / v / "model.onnx", enc)[0]
    assert ops["torch", "opt"] == ops["optimum", "opt"] and "Attention" in ops["torch", "opt"][1]
    assert "SkipLayerNormalization" not in ops["torch", "opt"][1]
    assert ops["torch", "onnx"][0] == ops["optimum", "onnx"][0] == onnx_export.OPSET
    for v in ("onnx", "opt"):
        assert abs(logits["torch", v] - logits["optimum", v]).max() < 1e-5


@needs_optimum
@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
@pytest.mark.parametrize("fuse", [True, False])
def test_fusion_options_are_optimums(level, fuse):
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    unfuse = {} if fuse else {"disable_skip_layer_norm_fusion": True, "disable_bias_skip_layer_norm_fusion": True}
    want = AutoOptimizationConfig.with_optimization_level(level, **unfuse)
    assert vars(onnx_export.fusion_options(level, fuse)) == vars(want.create_fusion_options("bert"))
    assert onnx_export._LEVELS[level][:2] == (want.optimization_level, want.enable_transformers_specific_optimizations)


@needs_optimum
@pytest.mark.parametrize("name", sorted(onnx_export.PRESETS))
def test_int8_presets_are_optimums(name):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    want = getattr(AutoQuantizationConfig, name)(is_static=False, per_channel=False)
    got = onnx_export.PRESETS[name]
    assert (got.quant_type(), got.reduce_range, got.weights_symmetric, got.activations_symmetric) == \
        (want.weights_dtype, want.reduce_range, want.weights_symmetric, want.activations_symmetric)
    assert got.operators() == [str(o) for o in want.operators_to_quantize]


def test_exporter_choice_follows_the_environment(monkeypatch):
    monkeypatch.setenv(onnx_export.EXPORTER_ENV, "torch")
    assert onnx_export.active_exporter() == onnx_export.Exporter("torch", "QADISTILL_EXPORTER=torch")
    monkeypatch.setenv(onnx_export.EXPORTER_ENV, "tensorrt")
    with pytest.raises(UserInputError, match="QADISTILL_EXPORTER='tensorrt' is not an exporter"):
        onnx_export.active_exporter()
    monkeypatch.setenv(onnx_export.EXPORTER_ENV, "optimum")
    monkeypatch.setattr(onnx_export, "_optimum_status", lambda: "optimum-onnx not installed")
    with pytest.raises(ExportError, match="optimum-onnx not installed"):
        onnx_export.active_exporter()
    monkeypatch.delenv(onnx_export.EXPORTER_ENV)
    assert onnx_export.active_exporter().describe() == "torch.onnx + ORT optimizer (optimum-onnx not installed)"


def test_a_bad_exporter_setting_is_refused_before_any_work(cli, tiny, tmp_path, monkeypatch):
    from qadistill.store import Store

    Store.open().add_artifact("tiny-s", "student-model", tiny, recipe="x", manifest={"max_length": 48})
    monkeypatch.setenv(onnx_export.EXPORTER_ENV, "tensorrt")
    r = cli("export", "tiny-s", "--quantize", "dynamic", "--data", str(tiny_jsonl(tmp_path / "d.jsonl")))
    assert r.exit_code == 2 and "QADISTILL_EXPORTER='tensorrt' is not an exporter" in r.stderr and "Traceback" not in r.output
    assert "export tiny-s" not in r.stderr  # no progress: nothing was scored or exported


@pytest.mark.integration
def test_every_cpu_variant_through_the_torch_exporter(tiny, tmp_path, monkeypatch):
    """On either line, `export --all` through torch.onnx + the ORT optimizer: the four CPU variants, fp32 parity
    within 1e-4 of PyTorch, int8 dynamic on the fused graph (QAttention)."""
    import onnx

    from qadistill.compress import ExportRequest, export_model

    monkeypatch.setenv(onnx_export.EXPORTER_ENV, "torch")
    res = export_model("tiny", tiny, ["onnx", "optimized", "int8-dynamic", "int8-static"], ExportRequest("", calibration_pairs=24),
                       max_length=48, data=str(tiny_jsonl(tmp_path / "d.jsonl")), parity_queries=12, out_root=tmp_path / "out")
    by = {r.variant: r for r in res}
    assert by["onnx"].parity.max_abs_diff < 1e-4 and by["optimized"].parity.max_abs_diff < 1e-4
    assert by["int8-dynamic"].details["graph"] == "O2"
    assert "QAttention" in {n.op_type for n in onnx.load(str(Path(by["int8-dynamic"].path) / "model.onnx")).graph.node}
    for r in res:
        man = json.loads((Path(r.path) / "qadistill_export.json").read_text())
        assert man["variant"] == r.variant and man["parity"]["pairs"] == 48 and man["ort_session"]["config"]


def test_an_o4_export_is_fp16_with_fp32_inputs_and_outputs(tiny, tmp_path):
    """The GPU variant's conversion (checked here on the CPU; only its speed needs CUDA)."""
    import onnx

    onnx_export.torch_export(tiny, tmp_path / "onnx")
    onnx_export.ort_optimize(tmp_path / "onnx", tmp_path / "fp16", "O4", for_gpu=True)
    g = onnx.load(str(tmp_path / "fp16" / "model.onnx")).graph
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in g.initializer)
    assert g.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_an_encoder_without_ort_fusions_is_an_export_error(tiny, tmp_path):
    onnx_export.torch_export(tiny, tmp_path / "onnx")
    cfg = tmp_path / "onnx" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "model_type": "gpt2"}))
    with pytest.raises(ExportError, match="'gpt2' has no transformer fusions"):
        onnx_export.ort_optimize(tmp_path / "onnx", tmp_path / "opt", "O2")


# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def saved_student(tmp_path):
    """A student saved as `distill` saves it (heads folded by save_student), with non-trivial heads."""
    import torch
    from transformers import BertModel, BertTokenizerFast

    from qadistill.student import make_student_class, save_student

    enc_dir = make_tiny_model(tmp_path / "enc", "bi", seed=3)
    model = make_student_class()(BertModel.from_pretrained(str(enc_dir)), n_heads=2).eval()
    with torch.no_grad():
        model.heads.weight.normal_()
        model.heads.bias.normal_()
    save_student(model, BertTokenizerFast.from_pretrained(str(enc_dir)), tmp_path / "student")
    return tmp_path / "student"


def test_a_saved_students_config_says_its_score_is_a_raw_logit(saved_student):
    from qadistill.student import SCORE_CONFIG

    cfg = json.loads((saved_student / "config.json").read_text())
    assert cfg["sentence_transformers"] == SCORE_CONFIG["sentence_transformers"] == {"activation_fn": "torch.nn.modules.linear.Identity"}


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="sentence-transformers is not installed on this line")
def test_sentence_transformers_cross_encoder_scores_a_student_as_qadistill_does(saved_student, tmp_path):
    import numpy as np
    from sentence_transformers import CrossEncoder

    from qadistill.api import load

    pairs = list(zip(QUERIES, PASSAGES))
    ours = np.array(load(str(saved_student), backend="torch").score(pairs))
    ce = CrossEncoder(str(saved_student), device="cpu", local_files_only=True)
    theirs = ce.predict(pairs, convert_to_numpy=True)
    assert abs(theirs - ours).max() < 1e-5, (theirs, ours)
    assert (ours < 0).any() or (ours > 1).any()  # raw logits: a sigmoid would have squashed them into (0, 1)
    # without the field, CrossEncoder puts a sigmoid on a one-label model: the field is what keeps the scores equal
    bare = tmp_path / "bare"
    shutil.copytree(saved_student, bare)
    cfg = json.loads((bare / "config.json").read_text())
    del cfg["sentence_transformers"]
    (bare / "config.json").write_text(json.dumps(cfg))
    squashed = CrossEncoder(str(bare), device="cpu", local_files_only=True).predict(pairs, convert_to_numpy=True)
    assert abs(squashed - 1 / (1 + np.exp(-ours))).max() < 1e-5
