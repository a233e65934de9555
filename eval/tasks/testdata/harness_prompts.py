"""Writes harness_prompts.json: the prompts lm-evaluation-harness builds for
herd's test files, computed with the harness's own code (for the golden test
TestPromptsMatchHarness).

    python3 harness_prompts.py HARNESS_SRC > harness_prompts.json

HARNESS_SRC is a checkout of EleutherAI/lm-evaluation-harness (only the
files named below are read; no package needs installing beyond PyYAML and
Jinja2). Used from it: the task YAMLs' templates, rendered by Jinja2 with
the environment of lm_eval/utils.py; ContextSampler and FirstNSampler
(lm_eval/api/samplers.py) seeded with 1234; Message and maybe_delimit
(lm_eval/api/utils.py); ConfigurableTask.build_qa_turn and
multiple_input_context (lm_eval/api/task.py, taken out with ast); the
HellaSwag and Winogrande preprocessing (their utils). What this script
writes itself is the loop of ConfigurableTask.fewshot_context and its
doc_to_text/doc_to_target/doc_to_choice dispatch, transcribed.
"""

import __future__
import ast
import importlib.util
import json
import os
import sys
import types

import yaml
from jinja2 import BaseLoader, Environment, StrictUndefined

SRC = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
sys.modules["datasets"] = types.SimpleNamespace(Dataset=object)  # type hints only


def load(rel, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SRC, rel))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


samplers = load("lm_eval/api/samplers.py", "samplers")
apiutils = load("lm_eval/api/utils.py", "apiutils")
hs_utils = load("lm_eval/tasks/hellaswag/utils.py", "hs_utils")
wg = load("lm_eval/tasks/winogrande/preprocess_winogrande.py", "wg")

# ConfigurableTask's two methods, compiled from the harness's source
tree = ast.parse(open(os.path.join(SRC, "lm_eval/api/task.py")).read())
ns = {"Message": apiutils.Message, "maybe_delimit": apiutils.maybe_delimit,
      "requires_delimiter": apiutils.requires_delimiter, "cast": lambda t, v: v}
for node in ast.walk(tree):
    if isinstance(node, ast.ClassDef) and node.name == "ConfigurableTask":
        for f in node.body:
            if isinstance(f, ast.FunctionDef) and f.name in ("build_qa_turn", "multiple_input_context"):
                f.decorator_list = []
                mod = ast.Module(body=[f], type_ignores=[])
                exec(compile(ast.fix_missing_locations(mod), "task.py", "exec", flags=__future__.annotations.compiler_flag), ns)

env = Environment(loader=BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True)


def render(t, doc):
    return env.from_string(t).render(**doc)


def yml(rel):
    class L(yaml.SafeLoader):
        pass
    L.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(open(os.path.join(SRC, rel)), Loader=L)


def jsonl(name):
    return [json.loads(l) for l in open(os.path.join(HERE, name)) if l.strip()]


class Task:
    """The parts of ConfigurableTask that build a plain-text prompt."""

    def __init__(self, cfg, docs, pool, sampler="default", same=False, description="",
                 text=None, target=None, choice=None, multiple_input=False):
        self.cfg, self.docs, self.pool, self.same = cfg, docs, pool, same
        self.description, self.multiple_input = description, multiple_input
        self.text, self.target, self.choice = text, target, choice
        cls = samplers.FirstNSampler if sampler == "first_n" else samplers.ContextSampler
        self.sampler = cls(pool, rnd=1234)
        self.features = set(docs[0].keys()) if docs else set()

    def doc_to_text(self, doc):
        if callable(self.text):
            return self.text(doc)
        t = self.cfg["doc_to_text"]
        if t in self.features:
            return doc[t]
        s = render(t, doc)
        return ast.literal_eval(s) if s.isdigit() and self.cfg.get("doc_to_choice") is not None else s

    def doc_to_target(self, doc):
        if callable(self.target):
            return self.target(doc)
        t = self.cfg["doc_to_target"]
        if isinstance(t, int):
            return t
        if t in self.features:
            return doc[t]
        s = render(t, doc)
        return ast.literal_eval(s) if s.isdigit() and self.cfg.get("doc_to_choice") is not None else s

    def doc_to_choice(self, doc):
        if callable(self.choice):
            return self.choice(doc)
        c = self.cfg.get("doc_to_choice")
        if c is None:
            return None
        if isinstance(c, list):
            return c
        if c in self.features:
            return doc[c]
        return ast.literal_eval(render(c, doc))

    def fewshot_context(self, doc, k):
        messages = []
        if self.description:
            messages.append(apiutils.Message("system", self.description))
        if k > 0:
            for fs in self.sampler.sample(n=k, eval_doc=doc if self.same else None):
                q, c, a = self.doc_to_text(fs), self.doc_to_choice(fs), self.doc_to_target(fs)
                if self.multiple_input:
                    q, c = c[q], None
                messages += self.build_qa_turn(q=q, c=c, a=a, gen_prefix=None,
                                                tgt_delim=" ", few_delim="\n\n")
        q, c = self.doc_to_text(doc), self.doc_to_choice(doc)
        if self.multiple_input:
            return self.multiple_input_context(messages, None, c)
        messages += self.build_qa_turn(q=q, c=c, gen_prefix=None, tgt_delim=" ", few_delim="")
        return ["".join(m.to_text() for m in messages)]

    build_qa_turn = ns["build_qa_turn"]
    multiple_input_context = ns["multiple_input_context"]

    def continuations(self, doc):
        if self.multiple_input:
            return [" " + self.doc_to_target(doc)]
        c = self.doc_to_choice(doc)
        return [" " + x for x in c] if c is not None else []


def tasks():
    hs_cfg = yml("lm_eval/tasks/hellaswag/hellaswag.yaml")
    proc = lambda docs: [{**d, **hs_doc(d)} for d in docs]

    def hs_doc(doc):  # the body of utils.process_docs' _process_doc, via its own preprocess
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {"query": hs_utils.preprocess(doc["activity_label"] + ": " + ctx),
                "choices": [hs_utils.preprocess(e) for e in doc["endings"]], "gold": int(doc["label"])}

    yield "hellaswag", lambda: Task(hs_cfg, proc(jsonl("hellaswag.jsonl")), proc(jsonl("hellaswag_train.jsonl")))
    arc = yml("lm_eval/tasks/arc/arc_easy.yaml")
    yield "arc_easy", lambda: Task(arc, jsonl("arc.jsonl"), jsonl("arc_train.jsonl"))
    yield "arc_easy_same", lambda: Task(arc, jsonl("arc.jsonl"), jsonl("arc.jsonl"), same=True)
    mm = yml("lm_eval/tasks/mmlu/default/_default_template_yaml")
    for subj in ["farm_animals", "simple_math"]:
        desc = "The following are multiple choice questions (with answers) about " + subj.replace("_", " ") + ".\n\n"
        yield "mmlu_" + subj, (lambda s=subj, d=desc: Task(
            mm, [x for x in jsonl("mmlu_test.jsonl") if x["subject"] == s],
            [x for x in jsonl("mmlu_dev.jsonl") if x["subject"] == s], sampler="first_n", description=d))
    tq = yml("lm_eval/tasks/truthfulqa/truthfulqa_mc1.yaml")
    yield "truthfulqa_mc1", lambda: Task(tq, jsonl("truthfulqa.jsonl"), [])
    yield "truthfulqa_mc2", lambda: Task({**tq, "doc_to_choice": "{{mc2_targets.choices}}"}, jsonl("truthfulqa.jsonl"), [])
    wcfg = {"doc_to_choice": "fn"}
    yield "winogrande", lambda: Task(wcfg, jsonl("winogrande.jsonl"), jsonl("winogrande_train.jsonl"), multiple_input=True,
                                     text=wg.doc_to_text, target=wg.doc_to_target, choice=wg.doc_to_choice)
    g = yml("lm_eval/tasks/gsm8k/gsm8k.yaml")
    yield "gsm8k", lambda: Task({k: v for k, v in g.items() if k != "doc_to_choice"}, jsonl("gsm8k.jsonl"), jsonl("gsm8k_train.jsonl"))


out = {}
for name, make in tasks():
    for k in range(0, 4):
        t = make()
        try:
            out[f"{name}/{k}"] = [{"contexts": t.fewshot_context(d, k), "continuations": t.continuations(d)} for d in t.docs]
        except (AssertionError, ValueError):
            pass  # more examples than the pool holds
json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
print()
