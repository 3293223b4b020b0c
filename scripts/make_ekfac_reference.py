#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/ekfac/reference.json: EK-FAC influence scores that
kronfluence 1.0.1 computes on the tiny random BertForSequenceClassification of the hf-bert
fixture (every nn.Linear tracked: attention, feed-forward, pooler, classifier), for 48
training and 8 query texts of that fixture (the token ids transformers gave; labels i % 2),
one text per batch so that no padding enters the factors, and model.eval() (no dropout).

Two settings, each with the empirical Fisher (the training texts' own labels, so that the
factors do not depend on a random draw):
- "margin-heuristic": query measurement log p_y - log(1 - p_y), kronfluence's heuristic
  damping (damping_factor=None: 0.1 x the mean of each layer's corrected eigenvalues);
- "loss-1e-3": query measurement the cross-entropy, damping 1e-3.
tangent's `EKFAC` must give scores correlated at least 0.99 with these (EKFACTests).

Run from the repository root (installs what it needs):
    python3 scripts/make_ekfac_reference.py
"""
import json
import os
import subprocess
import sys
import tempfile

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "kronfluence==1.0.1", "transformers", "safetensors", "torch"],
               check=True)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import kronfluence  # noqa: E402
from kronfluence.analyzer import Analyzer, prepare_model  # noqa: E402
from kronfluence.arguments import FactorArguments, ScoreArguments  # noqa: E402
from kronfluence.task import Task  # noqa: E402
from transformers import BertForSequenceClassification  # noqa: E402

FIX = "Tests/TangentTests/Fixtures"
with open(f"{FIX}/hf-bert/reference.json", encoding="utf-8") as f:
    ids = [c["ids"] for c in json.load(f)["cases"] if len(c["ids"]) > 2]
train = [(x, i % 2) for i, x in enumerate(ids[:48])]
queries = [(x, i % 2) for i, x in enumerate(ids[48:56])]


class Texts(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        x, y = self.items[i]
        return torch.tensor(x), torch.tensor(y)


class Classification(Task):
    def __init__(self, measurement):
        self.measurement = measurement

    def compute_train_loss(self, batch, model, sample=False):
        x, y = batch
        logits = model(input_ids=x).logits
        if sample:
            raise AssertionError("the reference uses the empirical Fisher")
        return F.cross_entropy(logits, y, reduction="sum")

    def compute_measurement(self, batch, model):
        x, y = batch
        logits = model(input_ids=x).logits
        if self.measurement == "loss":
            return F.cross_entropy(logits, y, reduction="sum")
        correct = logits.gather(1, y[:, None])[:, 0]
        others = logits.clone()
        others.scatter_(1, y[:, None], float("-inf"))
        return (correct - others.logsumexp(dim=-1)).sum()


out = {"kronfluence": kronfluence.__version__, "torch": torch.__version__, "train": [x for x, _ in train],
       "trainLabels": [y for _, y in train], "queries": [x for x, _ in queries], "queryLabels": [y for _, y in queries],
       "settings": {}}
for name, measurement, damping in [("margin-heuristic", "margin", None), ("loss-1e-3", "loss", 1e-3)]:
    model = BertForSequenceClassification.from_pretrained(f"{FIX}/hf-bert").eval()
    task = Classification(measurement)
    model = prepare_model(model, task)
    work = tempfile.mkdtemp()
    analyzer = Analyzer(analysis_name="tangent", model=model, task=task, cpu=True, output_dir=work, disable_tqdm=True)
    factor_args = FactorArguments(strategy="ekfac", use_empirical_fisher=True)
    analyzer.fit_all_factors(factors_name="f", dataset=Texts(train), per_device_batch_size=1, factor_args=factor_args,
                             overwrite_output_dir=True)
    analyzer.compute_pairwise_scores(scores_name="s", factors_name="f", query_dataset=Texts(queries), train_dataset=Texts(train),
                                     per_device_query_batch_size=1, per_device_train_batch_size=1,
                                     score_args=ScoreArguments(damping_factor=damping), overwrite_output_dir=True)
    scores = analyzer.load_pairwise_scores("s")["all_modules"]
    out["settings"][name] = {"measurement": measurement, "damping": damping, "scores": scores.tolist()}
    print(f"{name}: scores {tuple(scores.shape)}, |s| mean {scores.abs().mean():.3e}")
os.makedirs(f"{FIX}/ekfac", exist_ok=True)
with open(f"{FIX}/ekfac/reference.json", "w") as f:
    json.dump(out, f)
print(f"wrote {FIX}/ekfac/reference.json (kronfluence {kronfluence.__version__}, torch {torch.__version__})")
