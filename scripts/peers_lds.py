#!/usr/bin/env python3
"""The peers on tangent's own LDS ground truth: kronfluence 1.0.1's EK-FAC influence for
the model under study of a `tangent lds` run (OUT/model-0, a Hugging Face directory when
the run fine-tuned one with --recipe), on the same sampled texts, scored against the same
subset models' margins (OUT/sample.json), so its LDS is comparable with lds.md's rows.

kronfluence is run as its GLUE example runs it: every nn.Linear tracked, the true Fisher
(labels sampled from the model), the query measurement the margin of the compared class
(what LDS measures), and both its default damping (damping_factor 1e-8) and its heuristic
(None: 0.1 x each layer's mean eigenvalue). A training text's attribution is minus its
score (upweighting it moves the margin by -score / n). LDS: for each test text, the
Spearman correlation over subsets of the attributions summed over each subset with the
subset model's margin; the mean over test texts (texts whose margins or sums are constant
are left out, as tangent does).

Writes OUT/peers.json and prints the table. Not run in CI (hours on 2 CPU cores for 1000
training and 500 test texts of a 22.7M-parameter encoder).
    python3 scripts/peers_lds.py OUT [--query-batch 8] [--limit-test N]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "kronfluence==1.0.1", "transformers", "safetensors", "torch", "scipy"],
               check=True)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
import kronfluence  # noqa: E402
from kronfluence.analyzer import Analyzer, prepare_model  # noqa: E402
from kronfluence.arguments import FactorArguments, ScoreArguments  # noqa: E402
from kronfluence.task import Task  # noqa: E402
from kronfluence.utils.dataset import DataLoaderKwargs  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("--query-batch", type=int, default=8)
parser.add_argument("--limit-test", type=int, default=None)
args = parser.parse_args()
sample = json.load(open(f"{args.run}/sample.json"))
names = sample["labels"]
model_dir = f"{args.run}/model-0"
tok = AutoTokenizer.from_pretrained(model_dir)
test_rows = sample["test"][: args.limit_test] if args.limit_test else sample["test"]
compared = sample["compared"][: len(test_rows)]
margins = np.array(sample["margins"])[:, : len(test_rows)]
subsets = sample["subsets"]
n = len(sample["train"])


def encode(rows, labels):
    return [(tok(r["text"], truncation=True)["input_ids"], y) for r, y in zip(rows, labels)]


train = encode(sample["train"], [names.index(r["label"]) for r in sample["train"]])
test = encode(test_rows, compared)


class Texts(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate(batch):
    width = max(len(x) for x, _ in batch)
    ids = torch.full((len(batch), width), tok.pad_token_id)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for b, (x, _) in enumerate(batch):
        ids[b, : len(x)] = torch.tensor(x)
        mask[b, : len(x)] = 1
    return ids, mask, torch.tensor([y for _, y in batch])


class Classification(Task):
    def compute_train_loss(self, batch, model, sample=False):
        ids, mask, y = batch
        logits = model(input_ids=ids, attention_mask=mask).logits
        if sample:
            with torch.no_grad():
                y = torch.multinomial(F.softmax(logits.detach(), dim=-1), num_samples=1).flatten()
        return F.cross_entropy(logits, y, reduction="sum")

    def compute_measurement(self, batch, model):
        ids, mask, y = batch
        logits = model(input_ids=ids, attention_mask=mask).logits
        correct = logits.gather(1, y[:, None])[:, 0]
        others = logits.clone()
        others.scatter_(1, y[:, None], float("-inf"))
        return (correct - others.logsumexp(dim=-1)).sum()

    def get_attention_mask(self, batch):
        return batch[1]


def lds(attributions):
    """Mean over test texts of Spearman(subset sums, subset margins)."""
    member = np.zeros((len(subsets), n))
    for s, members in enumerate(subsets):
        member[s, members] = 1
    sums = member @ attributions.T  # [subsets, tests]
    values = []
    for t in range(sums.shape[1]):
        if np.ptp(sums[:, t]) == 0 or np.ptp(margins[:, t]) == 0:
            continue
        values.append(spearmanr(sums[:, t], margins[:, t]).correlation)
    return float(np.mean(values)), len(values)


torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
task = Classification()
model = prepare_model(model, task)
work = tempfile.mkdtemp()
analyzer = Analyzer(analysis_name="peers", model=model, task=task, cpu=True, output_dir=work, disable_tqdm=False)
analyzer.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=collate))
started = time.time()
analyzer.fit_all_factors(factors_name="ekfac", dataset=Texts(train), per_device_batch_size=16,
                         factor_args=FactorArguments(strategy="ekfac"), overwrite_output_dir=True)
factor_seconds = time.time() - started
results = {"kronfluence": kronfluence.__version__, "torch": torch.__version__, "train": n, "test": len(test),
           "subsets": len(subsets), "factor_seconds": factor_seconds, "rows": []}
for label, damping in [("kronfluence EK-FAC (default damping 1e-8)", 1e-8), ("kronfluence EK-FAC (heuristic damping)", None)]:
    started = time.time()
    analyzer.compute_pairwise_scores(scores_name=f"s{damping}", factors_name="ekfac", query_dataset=Texts(test),
                                     train_dataset=Texts(train), per_device_query_batch_size=args.query_batch,
                                     per_device_train_batch_size=16, score_args=ScoreArguments(damping_factor=damping),
                                     overwrite_output_dir=True)
    scores = analyzer.load_pairwise_scores(f"s{damping}")["all_modules"].double().numpy()
    value, texts = lds(-scores)
    results["rows"].append({"method": label, "lds": value, "texts": texts, "seconds": time.time() - started + factor_seconds})
    print(f"{label}: LDS {value:.3f} over {texts} test texts, {time.time() - started + factor_seconds:.0f} s")
with open(f"{args.run}/peers.json", "w") as f:
    json.dump(results, f, indent=1)
print(f"wrote {args.run}/peers.json")
