"""Writes harness_metrics.json: lm-evaluation-harness's own scoring of
log-likelihood vectors (multiple choice acc/acc_norm/acc_bytes, TruthfulQA
MC2), of its sample-mean standard error, and of its GSM8K filters and exact
match on hand-written generations, for the golden test
TestMetricsMatchHarness.

    /usr/bin/python3 harness_metrics.py HARNESS_SRC > harness_metrics.json

Needs numpy and PyYAML only. From HARNESS_SRC (a checkout of
EleutherAI/lm-evaluation-harness): ConfigurableTask.process_results
(lm_eval/api/task.py, taken out with ast, called on a stand-in task),
mean/sample_stddev/mean_stderr and exact_match_hf_evaluate
(lm_eval/api/metrics.py, taken out with ast), RegexFilter
(lm_eval/filters/extraction.py), process_results_mc2
(lm_eval/tasks/truthfulqa/utils.py), gsm8k.yaml's patterns.
"""

import __future__
import ast
import importlib.util
import json
import logging
import math
import os
import random
import re
import string
import sys
import types

import numpy as np
import yaml

SRC = sys.argv[1]


def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


stub("lm_eval")
stub("lm_eval.api")
stub("lm_eval.api.filter", Filter=object)
stub("lm_eval.api.registry", register_filter=lambda name: (lambda c: c))
for n in ["datasets", "sacrebleu", "rouge_score"]:
    stub(n, Dataset=object, rouge_scorer=None, scoring=None)
stub("rouge_score.rouge_scorer")
stub("rouge_score.scoring")


def load(rel, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SRC, rel))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def functions(rel, names, ns, cls=None):
    tree = ast.parse(open(os.path.join(SRC, rel)).read())
    body = tree.body
    if cls:
        body = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls).body
    for f in body:
        if isinstance(f, ast.FunctionDef) and f.name in names:
            f.decorator_list = []
            code = compile(ast.fix_missing_locations(ast.Module(body=[f], type_ignores=[])), rel, "exec",
                           flags=__future__.annotations.compiler_flag)
            exec(code, ns)
    return ns


extraction = load("lm_eval/filters/extraction.py", "extraction")
tqa = load("lm_eval/tasks/truthfulqa/utils.py", "tqa")
mns = functions("lm_eval/api/metrics.py", {"mean", "sample_stddev", "mean_stderr", "exact_match_hf_evaluate"},
                {"np": np, "math": math, "re": re, "string": string})
tns = functions("lm_eval/api/task.py", {"process_results"},
                {"np": np, "utils": types.SimpleNamespace(softmax=lambda x: np.exp(x - np.max(x)) / np.exp(x - np.max(x)).sum()),
                 "eval_logger": logging.getLogger("x")}, cls="ConfigurableTask")


class StandIn:
    """What ConfigurableTask.process_results reads of a multiple-choice task."""
    OUTPUT_TYPE = "multiple_choice"
    multiple_input = False
    multiple_target = False

    def __init__(self, choices, gold):
        self.config = types.SimpleNamespace(process_results=None)
        self._metric_fn_list = {"acc": None, "acc_norm": None, "acc_bytes": None}
        self.choices, self.gold = choices, gold

    def doc_to_choice(self, doc):
        return self.choices

    def doc_to_target(self, doc):
        return self.gold

    process_results = tns["process_results"]


rnd = random.Random(7)
mc = []
choice_sets = [["a", "bb", "ccc", "dddd"], ["é", "ab"], ["one", "two", "three"], ["x", "y"], ["long answer here", "no"]]
for i in range(40):
    choices = choice_sets[i % len(choice_sets)]
    lls = [round(-rnd.uniform(0.5, 30), 3) for _ in choices]
    if i % 7 == 0:
        lls[1] = lls[0]  # ties: argmax takes the first
    gold = rnd.randrange(len(choices))
    r = StandIn(choices, gold).process_results({}, [(ll, False) for ll in lls])
    labels = [rnd.randrange(2) for _ in choices]
    labels[0] = 1
    mc2 = tqa.process_results_mc2({"mc2_targets": {"labels": labels}}, [(ll, False) for ll in lls])["acc"]
    mc.append({"choices": choices, "gold": gold, "lls": lls, "labels": labels,
               "acc": r["acc"], "acc_norm": r["acc_norm"], "acc_bytes": r["acc_bytes"], "mc2": float(mc2)})
xs = [[1, 0, 1, 1], [0.25, 0.5, 1.0], [1, 1, 1], [0.98, 0.001, 0.5, 0.3, 0.7]]
stderr = [{"x": x, "mean": mns["mean"](x), "stderr": mns["mean_stderr"](x)} for x in xs]

g = yaml.load(open(os.path.join(SRC, "lm_eval/tasks/gsm8k/gsm8k.yaml")), Loader=type("L", (yaml.SafeLoader,), {}))
gens = ["She has 2 + 3 = 5 apples.\n#### 5", " So 3 * 4 = 12 legs.\n#### 12\n\n", "It costs $18.", "#### 1,000 dollars",
        "The answer is 7 or 8", "no numbers here", "#### -3.5\n\nQuestion", "2 + 3 = 5.", "#### 4.\n", "Pay $1,234.50 now, #### 12",
        "#### 6\nQuestion: #### 7", "-5 degrees", "total: 3.0", "A.B.C", "1. 2. 3. #### 3"]
refs = ["#### 5", "Each cat has 4 legs.\n#### 12", "#### 18", "x\n#### 1000", "#### 7", "#### 3", "#### -3.5", "#### 5", "#### 4",
        "#### 12", "#### 6", "#### -5", "#### 3", "#### 1", "#### 3"]
metric = g["metric_list"][0]
gsm = []
for flt in g["filter_list"]:
    step = flt["filter"][0]
    f = extraction.RegexFilter(regex_pattern=step["regex_pattern"], group_select=step.get("group_select", 0))
    preds = [x[0] for x in f.apply([[s] for s in gens], None)]
    for gen, ref, p in zip(gens, refs, preds):
        em = mns["exact_match_hf_evaluate"]([p], [ref], regexes_to_ignore=metric["regexes_to_ignore"],
                                            ignore_case=metric["ignore_case"], ignore_punctuation=metric["ignore_punctuation"])
        gsm.append({"filter": flt["name"], "generated": gen, "reference": ref, "extracted": p, "exact_match": float(em["exact_match"])})
json.dump({"multiple_choice": mc, "stderr": stderr, "gsm8k": gsm}, sys.stdout, indent=1, ensure_ascii=False)
print()
