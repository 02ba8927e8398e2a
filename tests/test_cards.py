"""The model cards list MRR@10 and NDCG@10 beside MAP/MRR, and still render metrics written before they existed."""

from __future__ import annotations

from qadistill.cards import model_card, push_card

NEW = {"data": "wikiqa:test", "map": 0.6626, "mrr": 0.6791, "p@1": 0.5432, "mrr@10": 0.6788, "ndcg@10": 0.7412,
       "accuracy": 0.9, "f1": 0.4, "auc": 0.8123, "queries": 237}
OLD = {"data": "trecqa:dev", "map": 0.61, "mrr": 0.65, "p@1": 0.5, "auc": 0.7, "queries": 65}  # a metrics.json of before


def _info(metrics: dict) -> dict:
    return {"name": "stu", "qadistill_version": "0", "parameters": 17_400_000, "heads": 2, "max_length": 128,
            "pipeline": {"teachers": ["a"], "student": "s", "distill": {"mode": "mkdm"}}, "student": {"init": None},
            "teachers": [], "metrics": metrics, "dev_map": 0.7, "dev_data": "wikiqa:dev", "splits": {},
            "train_pairs": 10, "train_seconds": 1.0, "teacher_scoring_seconds": 1.0, "threads": 1, "machine": "x",
            "command": "qadistill distill"}


def test_model_card_lists_mrr10_and_ndcg10():
    card = model_card(_info({"test": NEW, "trecqa:dev": OLD}))
    assert "    - type: ndcg@10\n      value: 0.7412" in card and "    - type: mrr@10\n      value: 0.6788" in card
    assert "| data | MAP | MRR | MRR@10 | NDCG@10 | P@1 | ROC-AUC | queries |" in card
    assert "| wikiqa:test | 0.6626 | 0.6791 | 0.6788 | 0.7412 | 0.5432 | 0.8123 | 237 |" in card
    assert "| trecqa:dev | 0.6100 | 0.6500 | - | - | 0.5000 | 0.7000 | 65 |" in card


def test_model_card_of_metrics_from_before_ndcg():
    card = model_card(_info({"test": {**OLD, "data": "wikiqa:test"}}))
    assert "type: map" in card and "ndcg@10" not in card.split("---")[1]  # the model-index lists what was measured


def test_push_card_indexes_what_metrics_json_holds(tmp_path):
    from huggingface_hub import ModelCard

    text = push_card("stu", "me/stu", {"metrics": {"test": NEW, "trecqa:dev": OLD}, "teachers": []}, [], tmp_path)
    res = {(e.dataset_name, e.metric_type): e.metric_value for e in ModelCard(text).data.eval_results}
    assert res[("WikiQA", "ndcg@10")] == 0.7412 and res[("WikiQA", "mrr@10")] == 0.6788 and res[("WikiQA", "map")] == 0.6626
    assert res[("trecqa", "map")] == 0.61 and ("trecqa", "ndcg@10") not in res


def test_the_card_says_which_teachers_were_cross_fitted():
    info = _info({"test": NEW})
    info["pipeline"]["teachers"] = ["bi", "cross"]
    card = model_card({**info, "teacher_folds": {"cross": 2}})
    assert "- teachers: bi, cross (cross-fitted: 2 fold models scored its own training questions);" in card
    assert "- teachers: bi, cross;" in model_card(info)  # a metrics.json from before cross-fitting


def test_push_card_names_a_users_own_test_file_not_wikiqa(tmp_path):
    from huggingface_hub import ModelCard

    own = {**NEW, "data": "/data/my pairs.jsonl:test"}
    card = ModelCard(push_card("stu", "me/stu", {"metrics": {"test": own}, "teachers": []}, [], tmp_path)).data
    assert {(e.dataset_name, e.dataset_type, e.dataset_split) for e in card.eval_results} == {("my pairs.jsonl", "local", "test")}
    assert not card.datasets  # before: datasets [microsoft/wiki_qa] and "WikiQA test" for a model measured on a private file
    wiki = ModelCard(push_card("stu", "me/stu", {"metrics": {"test": NEW}, "teachers": []}, [], tmp_path)).data
    assert wiki.datasets == ["microsoft/wiki_qa"] and {e.dataset_name for e in wiki.eval_results} == {"WikiQA"}
