#!/usr/bin/python3
"""Preference pairs with a learnable property, from TinyStories paragraphs
(../shared/data/pretrain/tinystories_{train,val}_head.txt), for herd rm
train and herd dpo (see BENCHMARKS.md, "Alignment").

Two sets, each as prompt/chosen/rejected JSONL, train pairs from the train
file and held-out pairs from the validation file:

  eos:     the prompt is a paragraph's first sentence; chosen is its next
           sentence (the answer then ends: the template's end-of-turn
           marker, EOS); rejected is the same sentence followed by two
           sentences of another paragraph (it rambles on).
  shuffle: the prompt is a paragraph's first sentence; chosen its next
           three sentences in order; rejected the same three shuffled.

    python3 bench/prefs_tinystories.py ../shared/data/pretrain OUTDIR
"""
import json
import os
import random
import re
import sys

SPLIT = re.compile(r'(?<=[.!?])\s+|(?<=[.!?]")\s+')


def paragraphs(path):
    out = []
    for p in open(path, encoding="utf-8").read().split("\n\n"):
        s = [x.strip() for x in SPLIT.split(p.strip()) if x.strip()]
        if len(s) >= 4 and all(len(x) < 200 for x in s[:4]):
            out.append(s)
    return out


def eos_pairs(ps, rng, n):
    out = []
    for i in rng.sample(range(len(ps)), min(n, len(ps))):
        j = rng.randrange(len(ps))
        while j == i:
            j = rng.randrange(len(ps))
        p = ps[i]
        out.append({"prompt": p[0], "chosen": p[1], "rejected": " ".join([p[1]] + ps[j][1:3])})
    return out


def shuffle_pairs(ps, rng, n):
    out = []
    for i in rng.sample(range(len(ps)), min(n, len(ps))):
        p = ps[i]
        rest = p[1:4]
        sh = rest[:]
        while sh == rest:
            rng.shuffle(sh)
        out.append({"prompt": p[0], "chosen": " ".join(rest), "rejected": " ".join(sh)})
    return out


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    tr = paragraphs(os.path.join(src, "tinystories_train_head.txt"))
    va = paragraphs(os.path.join(src, "tinystories_val_head.txt"))
    for name, make in (("eos", eos_pairs), ("shuffle", shuffle_pairs)):
        write(os.path.join(out, "stories_%s_train.jsonl" % name), make(tr, random.Random(1), 2000))
        write(os.path.join(out, "stories_%s_val.jsonl" % name), make(va, random.Random(2), 200))
    print("paragraphs: %d train, %d val" % (len(tr), len(va)))


if __name__ == "__main__":
    main()
