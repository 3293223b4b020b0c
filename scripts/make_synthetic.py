#!/usr/bin/env python3
"""Writes a synthetic training set of N labelled texts (default 100,000) for scale tests.

Each text joins the first part of one shipped movie-snippets training text with the last
part of another of the same label, cut at a word boundary chosen at random, so the texts
are new, look like the shipped ones and keep a label the movie-snippets model knows.
Seeded: the same seed gives the same file. Not committed: it is made where it is used.

    python3 scripts/make_synthetic.py OUT.jsonl [N] [SEED]
"""
import json
import os
import random
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(here, "..", "data", "movie-snippets", "train.jsonl")
    by_label = {}
    with open(source, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            words = row["text"].split()
            if len(words) >= 4:
                by_label.setdefault(row["label"], []).append(words)
    labels = sorted(by_label)
    rng = random.Random(seed)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for _ in range(n):
            label = rng.choice(labels)
            a, b = rng.choice(by_label[label]), rng.choice(by_label[label])
            head = a[: rng.randint(2, len(a) - 1)]
            tail = b[rng.randint(1, len(b) - 2):]
            f.write(json.dumps({"text": " ".join(head + tail), "label": label}) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}: {n} texts (seed {seed}) from {source}")


if __name__ == "__main__":
    main()
