"""MKDM ablation at the quickstart budget: objectives, head combination, head capacity, avg vs mkdm, teacher count and
TMKD stage 1, each arm over several seeds, all on one budget but the -full arm's (the `quickstart` pipeline: teachers all-MiniLM-L6-v2 +
paraphrase-MiniLM-L3-v2, student minilm-l6-first3-student, the first 1,150 WikiQA train questions, 1 epoch, batch 32,
lr 3e-4, max length 64, frozen word embeddings). MAP/MRR on WikiQA test and TREC-QA dev (validation only); the head
combination is chosen on WikiQA dev only.

Usage:
  python benchmarks/mkdm_ablation.py [--arms gold,avg,pointwise,margin-mse,listwise,listwise-mlp,two-stage,two-stage-avg,
      two-stage-3t,two-stage-3t-avg,two-stage-3t-pool2t,two-stage-3bi-avg,two-stage-4t-avg,two-stage-4t-avg-full,
      two-stage-4t-avg-full-ema,two-stage-4t-avg-full-a8-rh1,two-stage-4t-avg-full-len128,
      two-stage-4t-avg-full-2pass,two-stage-4t-avg-full-3pass,two-stage-3t-infold,
      two-stage-2pass,two-stage-pq,
      two-stage-3t-infold-ffn768,two-stage-4t-avg-full-more,two-stage-4t-avg-full-more-t1,two-stage-4t-avg-full-more-a8,
      two-stage-4t-avg-full-more-lr1e-4,two-stage-4t-avg-full-more-lr5e-5,two-stage-4t-avg-full-more-a8-lr1e-4,
      two-stage-4t-avg-full-more-a8-lr5e-5,two-stage-4t-avg-full-more-more,two-stage-4t-avg-full-more-a8-rh05,
      two-stage-4t-avg-full-more-a8-rh0,two-stage-4t-avg-full-more-a8-rh025,two-stage-4t-avg-full-more-a9-rh05,
      two-stage-4t-avg-full-more-a10-rh05,two-stage-4t-avg-full-more-a8-len128,two-stage-4t-avg-full-more-a8-rh05-len128,
      two-stage-4t-avg-full-len128-more-a8,two-stage-4t-avg-full-len128-more-a9-rh05,
      two-stage-4t-avg-full-2pass-more-a9-rh05,two-stage-4t-avg-full-2pass-more-a8,two-stage-4t-avg-full-2pass-more-a8-rh05,
      two-stage-4t-avg-full-2pass-more-a8-rh025,two-stage-4t-avg-full-2pass-mixdev,two-stage-4t-avg-full-2pass-mixdev-more-a8,
      two-stage-4t-avg-full-2pass-mixdev-more-a8-rh05,two-stage-4t-avg-full-2pass-a8e2-mixdev,
      two-stage-4t-avg-full-2pass-a8e2-rh05-mixdev,two-stage-4t-avg-full-2pass-mixdev-cross3]
      [--seeds 1,2,3] [--skip-done]
  python benchmarks/mkdm_ablation.py --table-only

Arms `*-3t` add a third, heterogeneous teacher: the MiniLM-L6 cross-encoder fine-tuned on WikiQA train by
`qadistill teach minilm-l6-cross-wikiqa --data wikiqa --epochs 4 --eval-every 271 --distill-from "" --folds 2` (gold
only; cross-fitted with 2 fold models, `qadistill.crossfit`, so the WikiQA train questions the student learns from are
scored by a fold model that never saw their answers), beside the two bi-encoders; each arm's "% of ensemble" is against
the ensemble of its own teachers. Arms `*-3t-infold` use the same teacher built without fold models
(`minilm-l6-cross-wikiqa-infold`, added to the user zoo): it scores the student's training questions from memory. The
script teaches whichever of the two a chosen arm needs when it is not built (and stops when minilm-l6-cross-wikiqa is
built without fold models).

Arms `two-stage-3bi-avg` (teachers L6 + L3 + all-mpnet-base-v2, all three zero-shot bi-encoders) and
`two-stage-4t-avg` (those three and the cross-encoder) ask whether a teacher strong out of domain (mpnet: TREC-QA dev
.831) carries that strength into the student; mpnet labels the pool like the others (its embeddings of the pool's
texts are computed once and cached). `two-stage-4t-avg-full` is `two-stage-4t-avg` on all 2,118 WikiQA train questions
(`--limit-train-queries 2118`; its built-in pool, built from their texts, grows to 62.5k pairs): the one arm whose
budget differs, asking whether the four-teacher student was short of data rather than of teachers.
`two-stage-4t-avg-full-a8-rh1` is that arm with a gold-heavy labelled stage that rehearses the pool (`--alpha 0.8
--rehearse 1`: one teacher-only batch of stage 1's pool mixed in per labelled batch): gold weight 0.8 alone (as the
`-more-a8` pass) fits WikiQA better and gives back TREC-QA. `two-stage-4t-avg-full-ema` is that arm keeping an exponential moving average of the weights (`--ema-decay 0.995`: the
average spans about the last 200 steps of each stage; stage 2 takes about 640): same steps, same data, the kept weights
averaged along the run instead of the last ones.

Arms `two-stage-pair-avg-full-2pass-mixdev` and `two-stage-pair-cross-avg-full-2pass-mixdev` run the recipe of
`two-stage-4t-avg-full-2pass-mixdev` with the two teachers of benchmarks/distill_table.py (all-mpnet-base-v2 +
all-MiniLM-L6-v2, whose ensemble the issue's starting student reached 95.1% of) and with those two plus the
cross-encoder: 2 against 3 teachers at the full recipe, each against its own teachers' ensemble.

Arm `two-stage-3t-pool2t` labels TMKD stage 1's pool with the two bi-encoders only (`--unlabelled-teachers`): the
cross-encoder, fine-tuned on WikiQA questions, is out of its domain on the pool's other-document sentences and titles;
it teaches in the labelled stage, as in `two-stage-3t`.

An arm `SOURCE-ffnW` (e.g. `two-stage-3t-ffn768`) prunes each seed's SOURCE student to W feed-forward units (student
init type "prune", FastFormers-style) and runs the labelled stage from it with the same teachers: the recovery pass.
An arm `SOURCE-more` (e.g. `two-stage-4t-avg-full-more`) starts from each seed's SOURCE student as built (student init
type "continue") and runs the same labelled stage once more: a second labelled epoch with the learning rate restarted;
`SOURCE-more-t1`, `-more-a8` and `-more-lr1e-4` run that pass at temperature 1, gold weight 0.8 or learning rate 1e-4;
`-more-a8-rh05` at gold weight 0.8 rehearsing the built-in pool (`--rehearse 0.5`: one teacher-only pool batch per two
labelled batches; `-more-a8-rh025`: one per four), and `-more-a8-rh0` is `-more-a8` run again under a name of its own (`--rehearse 0`, off): its
paired control, from the same source students on the same machine; `-more-a9-rh05` / `-more-a10-rh05` rehearse at gold
weight 0.9 / 1 (1: the labelled batches on gold alone), `-more-a8-len128` and `-more-a8-rh05-len128` run the pass at
max length 128. A derived arm keeps its source arm's options, so the passes of `two-stage-4t-avg-full-len128` run at
128 too.

A derived arm needs that seed's source student: where this machine has not built it (a clean clone), the script
rebuilds it first with the source arm's command and records it beside the recorded row of the same name in
results/mkdm_ablation_sources.jsonl (a rerun on another CPU lands near the recorded run, not on it).

Each run is one `qadistill distill quickstart ...` process; rows are appended to results/mkdm_ablation.jsonl as each
finishes (stop and continue with --skip-done); the table goes to results/mkdm_ablation.md. Arms run with
`--head-combine learned` also give the plain mean's metrics from the same run (the "(mean)" rows).
"""

from __future__ import annotations

import argparse
import json
import statistics
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import ensure_sidecar, write_text
from distill_table import qadistill

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
RUNS = RES / "mkdm_ablation.jsonl"
TEACHERS = "all-minilm-l6-v2,paraphrase-minilm-l3-v2"
CROSS, CROSS_INFOLD = "minilm-l6-cross-wikiqa", "minilm-l6-cross-wikiqa-infold"
TEACHERS_3T = f"{TEACHERS},{CROSS}"
TEACHERS_3T_INFOLD = f"{TEACHERS},{CROSS_INFOLD}"
MPNET = "all-mpnet-base-v2"
TEACHERS_3BI = f"{TEACHERS},{MPNET}"  # three zero-shot bi-encoders: no teacher fine-tuned on WikiQA
TEACHERS_4T = f"{TEACHERS},{MPNET},{CROSS}"
TEACHERS_PAIR = f"{MPNET},all-minilm-l6-v2"  # the two teachers of benchmarks/distill_table.py (the starting point)
TEACHERS_PAIR_CROSS = f"{TEACHERS_PAIR},{CROSS}"  # those two and the fine-tuned cross-encoder
ENSEMBLES = {TEACHERS: RES / "teachers_eval_quickstart.json", TEACHERS_3T: RES / "teachers_eval_quickstart_3t.json",
             TEACHERS_3T_INFOLD: RES / "teachers_eval_quickstart_3t_infold.json",
             TEACHERS_3BI: RES / "teachers_eval_quickstart_3bi.json", TEACHERS_4T: RES / "teachers_eval_quickstart_4t.json",
             TEACHERS_PAIR: RES / "teachers_eval_pair.json", TEACHERS_PAIR_CROSS: RES / "teachers_eval_cross_gold_only.json"}
TEACH = ["--data", "wikiqa", "--epochs", "4", "--eval-every", "271", "--distill-from", ""]  # gold only
FOLDS = {CROSS: "2", CROSS_INFOLD: "0"}
INFOLD_RECIPE = """kind = "teacher"
name = "minilm-l6-cross-wikiqa-infold"
description = "minilm-l6-cross-wikiqa without fold models (benchmarks/mkdm_ablation.py): it scores its own training questions from memory"
architecture = "cross-encoder"
parameters = 22713601
max_length = 128
finetune_from = "all-minilm-l6-v2"

[finetune]
data = "wikiqa"
folds = 0
"""
LEARNED = ["--head-combine", "learned"]


def full(teachers: str) -> list[str]:
    """Mode avg with TMKD stage 1 on all 2,118 WikiQA train questions, with these teachers: what every -full arm starts from."""
    return ["--teachers", teachers, "--mode", "avg", "--pretrain-unlabelled", "--limit-train-queries", "2118"]


FULL_4T = full(TEACHERS_4T)  # two-stage-4t-avg on all 2,118 WikiQA train questions
ARMS = {  # arm -> options over `qadistill distill quickstart` (listwise, mkdm, linear heads unless said)
    "gold": ["--mode", "gold"],
    "avg": ["--mode", "avg"],
    "pointwise": ["--loss", "pointwise", *LEARNED],
    "margin-mse": ["--loss", "margin-mse", *LEARNED],
    "listwise": LEARNED,
    "listwise-mlp": ["--heads", "mlp", *LEARNED],
    "two-stage": ["--pretrain-unlabelled", *LEARNED],
    "two-stage-avg": ["--mode", "avg", "--pretrain-unlabelled"],
    "two-stage-3t": ["--teachers", TEACHERS_3T, "--pretrain-unlabelled", *LEARNED],
    "two-stage-3t-avg": ["--teachers", TEACHERS_3T, "--mode", "avg", "--pretrain-unlabelled"],
    "two-stage-3t-infold": ["--teachers", TEACHERS_3T_INFOLD, "--pretrain-unlabelled", *LEARNED],
    # stage 1's pool labelled by the two bi-encoders only (the cross-encoder's head learns their mean there), stage 2 by all three
    "two-stage-3t-pool2t": ["--teachers", TEACHERS_3T, "--pretrain-unlabelled", "--unlabelled-teachers", TEACHERS, *LEARNED],
    "two-stage-3bi-avg": ["--teachers", TEACHERS_3BI, "--mode", "avg", "--pretrain-unlabelled"],
    "two-stage-4t-avg": ["--teachers", TEACHERS_4T, "--mode", "avg", "--pretrain-unlabelled"],
    # the one arm off the quickstart budget: all 2,118 WikiQA train questions (and the pool built from their texts), 1 epoch
    "two-stage-4t-avg-full": FULL_4T,
    # the same, keeping an exponential moving average of the weights (decay .995 per step: about the last 200 steps)
    "two-stage-4t-avg-full-ema": [*FULL_4T, "--ema-decay", "0.995"],
    # the same with a gold-heavy labelled stage (gold weight 0.8) that rehearses the pool: one teacher-only pool batch per
    # labelled batch mixed in (`--rehearse 1`), so fitting the gold labels does not wash out what stage 1 taught
    "two-stage-4t-avg-full-a8-rh1": [*FULL_4T, "--alpha", "0.8", "--rehearse", "1"],
    # two-stage-4t-avg-full at max length 128 in both stages (64 cuts 6% of WikiQA's pairs, 10% of its dev answers)
    "two-stage-4t-avg-full-len128": [*FULL_4T, "--max-length", "128"],
    # two-stage-4t-avg-full with two / three passes over its pool in stage 1 (twice / three times the teacher-scored steps)
    "two-stage-4t-avg-full-2pass": [*FULL_4T, "--unlabelled-passes", "2"],
    "two-stage-4t-avg-full-3pass": [*FULL_4T, "--unlabelled-passes", "3"],
    # -2pass again, its served weights mixed with stage 1's last at the share of 0, 0.1 .. 1 with the best dev MAP (WiSE-FT);
    # every share's figures are recorded, so its share-0 rows repeat -2pass on this machine
    "two-stage-4t-avg-full-2pass-mixdev": [*FULL_4T, "--unlabelled-passes", "2", "--stage1-mix", "dev"],
    # the same with a gold-heavy labelled stage of two epochs inside the run, so stage 1 is mixed back after it
    "two-stage-4t-avg-full-2pass-a8e2-mixdev": [*FULL_4T, "--unlabelled-passes", "2", "--alpha", "0.8", "--epochs", "2",
                                                "--stage1-mix", "dev"],
    # the same rehearsing one teacher-only pool batch per two labelled batches (`--rehearse 0.5`) in that labelled stage
    "two-stage-4t-avg-full-2pass-a8e2-rh05-mixdev": [*FULL_4T, "--unlabelled-passes", "2", "--alpha", "0.8", "--epochs", "2",
                                                     "--rehearse", "0.5", "--stage1-mix", "dev"],
    # -2pass-mixdev from another 3-layer start: the first 3 layers of the fine-tuned cross-encoder teacher (the same size as
    # minilm-l6-first3-student, whose layers come from the bi-encoder all-MiniLM-L6-v2 the teacher was fine-tuned from)
    "two-stage-4t-avg-full-2pass-mixdev-cross3": [*FULL_4T, "--unlabelled-passes", "2", "--stage1-mix", "dev",
                                                  "--student", "minilm-l6-cross3-student"],
    # -2pass-mixdev with distill_table.py's two teachers, all-mpnet-base-v2 + all-MiniLM-L6-v2 (its best student, two-stage
    # from minilm-l6-first3-student at the quickstart budget: 95.1% / 100.5% of their ensemble)
    "two-stage-pair-avg-full-2pass-mixdev": [*full(TEACHERS_PAIR), "--unlabelled-passes", "2", "--stage1-mix", "dev"],
    # the same with the fine-tuned cross-encoder as their third teacher
    "two-stage-pair-cross-avg-full-2pass-mixdev": [*full(TEACHERS_PAIR_CROSS), "--unlabelled-passes", "2", "--stage1-mix", "dev"],
    "two-stage-2pass": ["--pretrain-unlabelled", "--unlabelled-passes", "2", *LEARNED],
    "two-stage-pq": ["--pretrain-unlabelled", "--pool-pseudo-queries", "2", *LEARNED],
}
TABLE_REPORT = {"title": "MKDM ablation at the quickstart budget (`benchmarks/mkdm_ablation.py`)", "order": 101,
                "note": "Mean ± std over the seeds column's seeds. One budget for every arm but -full: the quickstart pipeline (1,150 "
                        "WikiQA train questions, 1 epoch, lr 3e-4, max length 64, 3-layer 17.4M student, listwise MKDM unless "
                        "the arm says otherwise; -full arms: all 2,118 train questions, so a pool built from all their texts, "
                        "the rest the same; -full-a8-rh1: its labelled stage at gold weight 0.8 with one teacher-only pool batch mixed in per labelled batch, `--rehearse 1`); teachers L6 + L3; -3t arms add the MiniLM-L6 "
                        "cross-encoder fine-tuned by `qadistill teach` (gold only; cross-fitted by 2 fold models that score "
                        "the WikiQA train questions, -infold arms: the same teacher without them, scoring those questions "
                        "from memory); -3bi arms add all-mpnet-base-v2 zero-shot instead (three bi-encoders, none fine-tuned "
                        "on WikiQA); -4t arms add both; -pair arms have distill_table.py's two teachers instead, all-mpnet-base-v2 + "
                        "all-MiniLM-L6-v2, and -pair-cross arms add the cross-encoder to those two. two-stage arms add TMKD stage 1 on the "
                        "pool in the pool column (pq: 2 pseudo-queries per document; 2pass / 3pass: two / three passes; pool2t: the pool labelled by "
                        "the two bi-encoders only; -ema: `--ema-decay 0.995`, an exponential moving average of the weights "
                        "evaluated and kept in each stage); -ffn768 arms are "
                        "those students with their FFN pruned to 768 units, then one labelled pass as recovery (train s: that "
                        "pass only); -more arms start from each seed's student of that arm as built and run the labelled stage "
                        "once more, the learning rate restarted (train s: that pass only; -more-t1 / -a8 / -lr1e-4 / -lr5e-5 / -a8-lr1e-4 / -a8-lr5e-5 / -a8-rh05 / -a8-rh025 / -a9-rh05 / -a10-rh05 / -a8-len128 / -a8-rh05-len128: "
                        "that pass at temperature 1 / gold weight 0.8 / learning rate 1e-4 / 5e-5 / gold weight 0.8 at 1e-4 / at 5e-5 / "
                        "gold weight 0.8 with one teacher-only pool batch per two / four labelled batches, `--rehearse 0.5` / `0.25` / "
                        "gold weight 0.9 / 1 (the labelled batches on gold alone) with one per two / gold weight 0.8 at max length 128 / the same with `--rehearse 0.5`; "
                        "-len128 arms train (and serve) at max length 128, which 64 cuts for 6% of WikiQA's pairs). The head combination is fitted on WikiQA dev; '(mean)' rows are the same runs served "
                        "with the plain mean of the heads. -a8e2 arms run the labelled stage for two epochs at gold weight 0.8 "
                        "(`--epochs 2 --alpha 0.8`; -a8e2-rh05: with `--rehearse 0.5`); -cross3 arms start from the first 3 "
                        "layers of the fine-tuned cross-encoder teacher (`minilm-l6-cross3-student`) instead of all-MiniLM-L6-v2's. -mixdev arms serve their weights mixed with stage 1's last "
                        "(`--stage1-mix dev`: (1 - w) x the labelled stage's + w x stage 1's, w of 0, 0.1 .. 1 chosen per seed "
                        "on WikiQA dev); their '(stage-1 share w)' rows are the same runs at every share, for the record "
                        "(share 0: the run as trained). % is of each arm's own teachers' ensemble."}
SOURCES = RES / "mkdm_ablation_sources.jsonl"
RECORDED = ("dev_map", "test_map", "trec_map", "train_seconds")  # a rebuilt source's figures set beside the recorded run's
SOURCES_REPORT = {"title": "Source students rebuilt for derived arms (`benchmarks/mkdm_ablation.py`)", "order": 102,
                  "note": "A derived arm (-more, -ffnW) starts from its source arm's student of each seed; where the machine had "
                          "not built it, the script rebuilt it with the recorded command. One line per rebuilt student, with "
                          "the recorded run's figures under 'recorded': runs agree across machines only to a point (bf16 "
                          "kernels differ between CPUs)."}
RUNS_REPORT = {"title": "MKDM ablation runs (`benchmarks/mkdm_ablation.py`)", "order": None,
               "note": "One line per arm and seed; the page shows mkdm_ablation.md."}


PRUNED_ARM = re.compile(r"(?P<source>.+)-ffn(?P<width>\d+)")  # e.g. two-stage-3t-ffn768: that arm's students, pruned
MORE_OPTIONS = {"more": [], "more-t1": ["--temperature", "1"], "more-a8": ["--alpha", "0.8"], "more-lr1e-4": ["--lr", "1e-4"],
                "more-lr5e-5": ["--lr", "5e-5"], "more-a8-lr1e-4": ["--alpha", "0.8", "--lr", "1e-4"],
                "more-a8-lr5e-5": ["--alpha", "0.8", "--lr", "5e-5"], "more-a8-rh05": ["--alpha", "0.8", "--rehearse", "0.5"],
                "more-a8-rh025": ["--alpha", "0.8", "--rehearse", "0.25"],
                "more-a9-rh05": ["--alpha", "0.9", "--rehearse", "0.5"],
                # the labelled batches on the gold labels alone, the teachers only through the rehearsed pool batches
                "more-a10-rh05": ["--alpha", "1", "--rehearse", "0.5"],
                # the pass at max length 128 (the source students were trained at 64, which cuts 6% of WikiQA's pairs)
                "more-a8-len128": ["--alpha", "0.8", "--max-length", "128"],
                "more-a8-rh05-len128": ["--alpha", "0.8", "--rehearse", "0.5", "--max-length", "128"],
                # -more-a8 again under its own name: the paired control of -more-a8-rh05 on the same machine's sources
                "more-a8-rh0": ["--alpha", "0.8", "--rehearse", "0"]}
# arms that rerun another arm's recipe under a name of their own (a paired control on another machine's sources): one
# recipe, so benchmarks/best_student.py pools their seeds with that arm's
SAME_RECIPE = {"two-stage-4t-avg-full-more-a8-rh0": "two-stage-4t-avg-full-more-a8"}
# e.g. two-stage-4t-avg-full-more: that arm's students, one more labelled pass (with the options MORE_OPTIONS names)
MORE_ARM = re.compile(r"(?P<source>.+)-(?P<more>" + "|".join(sorted(map(re.escape, MORE_OPTIONS), key=len, reverse=True)) + ")")
PRUNE_RECIPE = """kind = "student"
name = "{name}"
description = "{source} with its feed-forward layers pruned to {width} units (benchmarks/mkdm_ablation.py)"
init = {{ type = "prune", model = "{source}", intermediate_size = {width} }}
"""
CONTINUE_RECIPE = """kind = "student"
name = "{name}"
description = "{source} as built, for one more labelled pass (benchmarks/mkdm_ablation.py)"
init = {{ type = "continue", model = "{source}" }}
"""


def _derived(arm: str):
    """The match of a pruned (``SOURCE-ffnW``) or continued (``SOURCE-more``) arm whose SOURCE is an arm (itself
    possibly a continued one: ``SOURCE-more-more`` is a third labelled pass), else None."""
    if arm in ARMS:
        return None
    m = PRUNED_ARM.fullmatch(arm) or MORE_ARM.fullmatch(arm)
    return m if m and known(m["source"]) else None


def _root(arm: str) -> str:
    """The arm of ``ARMS`` a derived arm starts from."""
    while (m := _derived(arm)) is not None:
        arm = m["source"]
    return arm


def known(arm: str) -> bool:
    return arm in ARMS or _derived(arm) is not None


def arm_teachers(arm: str) -> str:
    opts = ARMS[_root(arm)]
    return opts[opts.index("--teachers") + 1] if "--teachers" in opts else TEACHERS


def arm_options(arm: str, seed: int) -> list[str]:
    """The arm's `distill quickstart` options. A pruned arm (``SOURCE-ffnW``) prunes that seed's SOURCE student to W
    feed-forward units (a student recipe with init type "prune", added to the user zoo) and runs the labelled stage from
    it with the same teachers, mode and heads as its source: the recovery pass (no stage 1). A continued arm
    (``SOURCE-more``) starts from that seed's SOURCE student as built (init type "continue") and runs the same labelled
    stage once more: a second labelled epoch with the learning rate restarted (no stage 1)."""
    m = _derived(arm)
    if m is None:
        return ARMS[arm]
    src, opts, out = m["source"], ARMS[_root(arm)], []
    # stage 1's options (a pass has no stage 1) and the source's student recipe (a pass starts from the built student)
    skip = {"--pretrain-unlabelled": 0, "--unlabelled-passes": 1, "--stage1-mix": 1, "--student": 1}
    i = 0
    while i < len(opts):
        if opts[i] in skip:
            i += 1 + skip[opts[i]]
            continue
        out.append(opts[i])
        i += 1
    name = f"abl-{arm}-s{seed}-student"
    if m.re is PRUNED_ARM:
        zoo_add(name, PRUNE_RECIPE.format(name=name, source=f"abl-{src}-s{seed}", width=m["width"]))
        return [*out, "--student", name]
    zoo_add(name, CONTINUE_RECIPE.format(name=name, source=f"abl-{src}-s{seed}"))
    return [*out, *MORE_OPTIONS[m["more"]], "--student", name]


def zoo_add(name: str, recipe: str) -> None:
    """Put a recipe this script needs into the user zoo (replacing an earlier copy)."""
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"{name}.toml"
        f.write_text(recipe)
        subprocess.run([sys.executable, "-m", "qadistill", "zoo", "add", "--force", str(f)], check=True, capture_output=True)


def ensure_taught(teachers: str) -> None:
    """Teach the cross-encoder teachers of ``teachers`` that are not built yet (the in-fold one's recipe goes to the
    user zoo first)."""
    from qadistill.errors import QadistillError
    from qadistill.registry import Registry
    from qadistill.store import Store

    for name in (CROSS, CROSS_INFOLD):
        if name not in teachers.split(","):
            continue
        teach = ["teach", name, *TEACH, "--folds", FOLDS[name]]
        if name == CROSS_INFOLD:
            zoo_add(name, INFOLD_RECIPE)
        try:
            folder = Registry(store=Store.open()).built_teacher(name)
        except QadistillError:
            subprocess.run([sys.executable, "-m", "qadistill", *teach], check=True)
            continue
        folds = json.loads((folder / "metrics.json").read_text()).get("folds") or {}
        if str(folds.get("k", 0)) != FOLDS[name]:
            raise SystemExit(f"{name} is built with {folds.get('k', 0)} fold models, this ablation needs {FOLDS[name]}: rebuild it with "
                             f"`qadistill {shlex.join(teach)}`")


def ensemble(teachers: str = TEACHERS) -> dict:
    path = ENSEMBLES[teachers]
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "teachers_eval.py"), "--teachers", teachers, "--name", path.stem], check=True)
    rows = json.loads(path.read_text())["rows"]
    return {"teachers": rows, "ensemble": next(r for r in rows if r["model"].startswith("ensemble("))}


def run_arm(arm: str, seed: int) -> dict:
    name = f"abl-{arm}-s{seed}"
    res = qadistill("distill", "quickstart", "--eval-also", "trecqa:dev", *arm_options(arm, seed), "--seed", str(seed), "--name", name, "--overwrite")
    return arm_row(res, arm, seed, res["_wall_seconds"], res["_command"])


def arm_row(res: dict, arm: str, seed: int, wall: float, command: str) -> dict:
    """One line of the runs file from a distill result (its JSON output, or a built student's metrics.json)."""
    m, comb = res["metrics"], res.get("head_combination") or {}
    row = {"name": f"abl-{arm}-s{seed}", "arm": arm, "seed": seed, "test_map": m["test"]["map"], "test_mrr": m["test"]["mrr"],
           "trec_map": m["trecqa:dev"]["map"], "trec_mrr": m["trecqa:dev"]["mrr"], "dev_map": res["dev_map"],
           "head_kind": res.get("head_kind"), "head_weights": res.get("head_weights"), "learned_kept": comb.get("kept"),
           "dev_map_mean": comb.get("map_mean"), "dev_map_learned": comb.get("map_learned"),
           "parameters": res["parameters"], "train_seconds": res["train_seconds"], "wall_seconds": wall,
           "threads": res["threads"], "command": command,
           "stage1_pool_pairs": (res.get("stage1") or {}).get("pool_pairs")}
    mix = res.get("stage1_mix")
    if mix:  # the served share and every share's figures (dev chose, or the recipe set, the served one)
        curves = {k: {c["share"]: c for c in mix["curves"][k]["by_share"]} for k in ("test", "trecqa:dev")}
        row.update(stage1_share=mix["share"], mix_curve=[
            {"share": c["share"], "dev_map": c["map"], "test_map": curves["test"][c["share"]]["map"],
             "test_mrr": curves["test"][c["share"]]["mrr"], "trec_map": curves["trecqa:dev"][c["share"]]["map"],
             "trec_mrr": curves["trecqa:dev"][c["share"]]["mrr"]} for c in mix["dev_curve"]])
    if comb.get("mean_metrics"):
        mm = comb["mean_metrics"]
        row.update(mean_test_map=mm["test"]["map"], mean_test_mrr=mm["test"]["mrr"], mean_trec_map=mm["trecqa:dev"]["map"],
                   mean_trec_mrr=mm["trecqa:dev"]["mrr"])
    return row


def share_rows(rs: list[dict]) -> dict[float, list[dict]]:
    """An arm's runs as they would have been at each stage-1 share of their recorded curve (``mix_curve``): share ->
    the seeds' rows with that share's figures. Empty unless every seed recorded one curve of the same shares."""
    curves = [r.get("mix_curve") for r in rs]
    if not all(curves) or len({tuple(c["share"] for c in curve) for curve in curves}) != 1:
        return {}
    return {c["share"]: [{**r, **{k: v for k, v in r["mix_curve"][i].items() if k != "share"}, "dev_map_learned": None}
                         for r in rs] for i, c in enumerate(curves[0])}


def read_rows(path: Path) -> list[dict]:
    """The lines of a runs file (none where it does not exist yet)."""
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def ensure_source(arm: str, seed: int) -> None:
    """A derived arm trains from that seed's student of its source arm. Where this machine has not built it (a clean
    clone, a new machine), rebuild it with the source arm's command (its own source first, for a chain), and record
    the rebuilt student beside the recorded row of the same name in results/mkdm_ablation_sources.jsonl: how far a
    rerun lands from the recorded run (bf16 kernels differ between CPUs, so runs agree across machines only to a
    point). A source built here before is recorded once, from its metrics.json, unless it is the recorded run itself
    (the source arm run here: nothing was rebuilt)."""
    from qadistill.paths import artifacts_dir

    m = _derived(arm)
    if m is None:
        return
    src = m["source"]
    ensure_source(src, seed)
    name = f"abl-{src}-s{seed}"
    metrics = artifacts_dir() / name / "metrics.json"
    row = None if metrics.exists() else run_arm(src, seed)
    if name in {r["name"] for r in read_rows(SOURCES)}:
        return
    recorded = next((r for r in read_rows(RUNS) if r["name"] == name), None)
    if row is None:
        info = json.loads(metrics.read_text())
        row = arm_row(info, src, seed, info["total_seconds"], info["command"].replace(" --format json", ""))
        if recorded and all(recorded[k] == row[k] for k in RECORDED):
            return
    row["recorded"] = {k: recorded[k] for k in RECORDED} if recorded else None
    with SOURCES.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    ensure_sidecar(SOURCES, SOURCES_REPORT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--skip-done", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    if not a.table_only:
        for t in {arm_teachers(arm) for arm in a.arms.split(",")}:
            ensure_taught(t)
            ensemble(t)
        done = {r["name"] for r in read_rows(RUNS)} if a.skip_done else set()
        for seed in [int(s) for s in a.seeds.split(",")]:  # seed-major: every arm has a first seed early
            for arm in a.arms.split(","):
                if f"abl-{arm}-s{seed}" in done:
                    continue
                ensure_source(arm, seed)
                row = run_arm(arm, seed)
                with RUNS.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                ensure_sidecar(RUNS, RUNS_REPORT)
                print(f"{row['name']:24s} test MAP {row['test_map']:.4f} | TREC {row['trec_map']:.4f} | weights {row['head_weights']} "
                      f"| train {row['train_seconds']:.0f}s", flush=True)
    write_table()


def _ms(v: list[float]) -> str:
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"


def write_table() -> None:
    rows = read_rows(RUNS)
    sets = [TEACHERS] + [t for t in ENSEMBLES if t != TEACHERS and any(arm_teachers(r["arm"]) == t for r in rows if known(r["arm"]))]
    lines = ["| model | teachers | seeds | WikiQA dev MAP | WikiQA test MAP | MRR | TREC-QA dev MAP | MRR | % of its teachers' ensemble MAP (WikiQA / TREC) | "
             "head weights (mean; learned kept) | stage-1 pool pairs | params | train s (median) | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    shown: set[str] = set()
    for t in sets:
        for r in ensemble(t)["teachers"]:
            if r["model"] in shown:
                continue
            shown.add(r["model"])
            lines.append(f"| {r['model']} | - | - | - | {r['wikiqa_map']:.4f} | {r['wikiqa_mrr']:.4f} | {r['trec_map']:.4f} | "
                         f"{r['trec_mrr']:.4f} | - | - | - | - | - | `{r['command']}` |")
    arms: dict[str, list[dict]] = {}
    for r in rows:
        arms.setdefault(r["arm"], []).append(r)
    for arm, rs in arms.items():
        e = ensemble(arm_teachers(arm) if known(arm) else TEACHERS)["ensemble"]
        n_teachers = 0 if arm == "gold" else len((arm_teachers(arm) if known(arm) else TEACHERS).split(","))
        shares = share_rows(rs)
        by_seed = "/".join(f"{r['stage1_share']:g}" for r in rs) if shares else ""
        served = f" (served: stage-1 share {by_seed} by seed)" if shares else ""
        variants = [("", served, rs)] + ([("mean_", " (mean)", rs)] if all("mean_test_map" in r for r in rs) else [])
        variants += [("", f" (stage-1 share {w:g})", srs) for w, srs in shares.items()]
        for pre, tag, runs in variants:
            tm, tt = [r[f"{pre}test_map"] for r in runs], [r[f"{pre}trec_map"] for r in runs]
            w = "-" if pre or not runs[0].get("head_weights") or len(runs[0]["head_weights"]) < 2 else \
                "/".join(f"{statistics.mean(r['head_weights'][i] for r in runs):.2f}" for i in range(len(runs[0]["head_weights"]))) + \
                f"; {sum(bool(r.get('learned_kept')) for r in runs)}/{len(runs)}"
            dev = _ms([r["dev_map_mean"] for r in runs]) if pre else _ms([r.get("dev_map_learned") or r["dev_map"] for r in runs])
            pool = runs[0].get("stage1_pool_pairs") or "-"
            lines.append(f"| `{arm}`{tag} | {n_teachers} | {len(runs)} | {dev} | {_ms(tm)} | {_ms([r[f'{pre}test_mrr'] for r in runs])} | {_ms(tt)} | "
                         f"{_ms([r[f'{pre}trec_mrr'] for r in runs])} | {100 * statistics.mean(tm) / e['wikiqa_map']:.1f}% / "
                         f"{100 * statistics.mean(tt) / e['trec_map']:.1f}% | {w} | {pool} | {runs[0]['parameters']} | "
                         f"{statistics.median(r['train_seconds'] for r in runs):.0f} | `{runs[0]['command']}` |")
    write_text(RES / "mkdm_ablation.md", "\n".join(lines) + "\n", TABLE_REPORT)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
