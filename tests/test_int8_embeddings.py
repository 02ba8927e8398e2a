"""Embedding tables in int8 with one scale per row (compress.quantize_embedding_rows)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qadistill.compress import quantize_embedding_rows


def _graph(path, table, tied=False):
    """ids -> Gather(table) -> out; ``tied``: the table also feeds a MatMul (an output projection), so it must stay."""
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0)]
    outputs = [helper.make_tensor_value_info("emb", TensorProto.FLOAT, None)]
    if tied:
        nodes.append(helper.make_node("MatMul", ["x", "table"], ["proj"]))
        outputs.append(helper.make_tensor_value_info("proj", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [None, None])]
    if tied:
        inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, table.shape[0]]))
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(table, "table")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _run(path, ids, **extra):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"ids": ids, **extra})


def test_each_row_keeps_its_own_precision(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.05, (50, 8)).astype(np.float32)
    table[7] *= 400  # one outlier row: with a single scale for the table, every small row would round to ~0
    path = tmp_path / "m.onnx"
    _graph(path, table)
    ids = np.array([[0, 7, 3, 49], [1, 2, 7, 7]], dtype=np.int64)
    assert quantize_embedding_rows(path) == 1
    m = onnx.load(str(path))
    types = {t.name: t.data_type for t in m.graph.initializer}
    assert TensorProto.INT8 in types.values() and TensorProto.FLOAT not in {types[n] for n in types if n.endswith("_int8_rows")}
    got = _run(path, ids)[0]
    want = table[ids]
    # per-row symmetric int8: error at most half a step of that row's scale
    bound = (np.abs(table).max(axis=1) / 127 / 2)[ids][..., None] + 1e-7
    assert got.shape == want.shape and np.all(np.abs(got - want) <= bound)
    small = ids != 7
    assert np.abs(got - want)[small].max() < 1e-3  # the outlier did not cost the other rows their precision
    assert sum(t.dims[0] * t.dims[1] for t in m.graph.initializer if t.data_type == TensorProto.INT8) == table.size


def test_a_table_read_by_anything_but_gather_is_left_alone(tmp_path):
    table = np.random.default_rng(1).normal(size=(6, 6)).astype(np.float32)
    path = tmp_path / "m.onnx"
    _graph(path, table, tied=True)
    before = path.read_bytes()
    assert quantize_embedding_rows(path) == 0
    assert path.read_bytes() == before
    ids = np.array([[1, 2]], dtype=np.int64)
    np.testing.assert_allclose(_run(path, ids, x=np.eye(6, dtype=np.float32))[0], table[ids])
