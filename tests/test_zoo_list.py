"""`zoo list` shows the best MAP with the dataset:split it was measured on; an eval elsewhere does not replace it."""

from __future__ import annotations

import json

from qadistill.store import Store
import pytest

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end


def _student(home, map_wikiqa: float = 0.573) -> None:
    with Store.open() as s:
        rid = s.start_run("distill", recipe="quickstart", params={"data": {"name": "wikiqa"}})
        s.add_artifact("stu", "student-model", home / "artifacts" / "stu", recipe="quickstart", run_id=rid)
        s.add_results("stu", "wikiqa", "test", {"map": map_wikiqa, "mrr": 0.58}, run_id=rid)
        s.finish_run(rid)
        s.add_results("stu", "/data/my-file.jsonl", "test", {"map": 0.252, "mrr": 0.26})  # `qadistill eval stu --data FILE`


def test_zoo_list_best_map_names_its_dataset(cli, isolated_home):
    _student(isolated_home)
    rows = {r["name"]: r for r in json.loads(cli("zoo", "list", "--format", "json").stdout)}
    for name in ("stu", "quickstart"):
        assert rows[name]["best_map"] == 0.573
        assert (rows[name]["best_map_dataset"], rows[name]["best_map_split"]) == ("wikiqa", "test")
    r = cli("zoo", "list")
    assert r.exit_code == 0, r.output
    line = next(x for x in r.stdout.splitlines() if x.strip("│ ").startswith("stu "))
    assert "0.573 wikiqa:test" in line and "0.252" not in line


def test_zoo_show_renders_an_undefined_metric(cli, isolated_home):
    _student(isolated_home)
    with Store.open() as s:
        s.add_results("stu", "tiny.jsonl", "test", {"map": float("nan")}, notes={"map": "no query with both a correct and a wrong candidate"})
    r = cli("zoo", "show", "stu")
    assert r.exit_code == 0, r.output
    assert "no query with both a correct and a wrong candidate" in r.stdout
    info = json.loads(cli("zoo", "show", "stu", "--format", "json").stdout)
    undefined = [x for x in info["results"] if x["dataset"] == "tiny.jsonl"]
    assert undefined == [{"artifact": "stu", "dataset": "tiny.jsonl", "split": "test", "metric": "map", "value": None,
                          "note": "no query with both a correct and a wrong candidate", "run_id": None}]


def test_eval_of_a_split_without_scorable_queries_is_stored_with_its_reason():
    from qadistill.metrics import ranking_metrics

    m = ranking_metrics(["q1", "q1", "q2"], [0.1, 0.2, 0.3], [1, 1, 1])  # no query has a wrong candidate
    notes = m["undefined"]  # ranking_metrics gives each undefined metric its reason
    assert notes["map"] == "no query with both a correct and a wrong candidate" and "auc" in notes and "f1" not in notes
    with Store.open() as s:
        s.add_results("x", "tiny", "test", {k: m[k] for k in ("map", "mrr", "auc", "f1")}, notes=notes)
        by = {r["metric"]: r for r in s.results("x")}
    assert by["map"]["value"] is None and by["auc"]["note"].startswith("the labels hold one class")
    assert by["f1"]["value"] == m["f1"] and by["f1"]["note"] is None
