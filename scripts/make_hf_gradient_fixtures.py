#!/usr/bin/env python3
"""Writes gradients.safetensors into Tests/TangentTests/Fixtures/hf-bert, hf-xlmr, hf-distilbert, hf-electra, hf-albert,
hf-deberta, hf-deberta-own,
hf-modernbert and hf-modernbert-biased: the
per-example gradients `torch.func.grad` gives (one unpadded text at a time) for the first
8 texts of more than 2 tokens of each fixture's reference.json, of
sum_c seed[c] * logits[c] with a fixed seed. The Swift tests check the toolkit's backward
pass against them, tensor by tensor.

Per text b, tensor NAME is stored as `b/NAME`, except the word-embedding table, of which
only the rows of the text's own ids are stored (`b/word_rows`, ids in the metadata): the
other rows are zero. Metadata: `seed` and `ids` (JSON).

Run from the repository root after scripts/make_hf_fixtures.py (installs what it needs):
    python3 scripts/make_hf_gradient_fixtures.py
"""
import json
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "safetensors", "torch"], check=True)
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.func import functional_call, grad  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

for name, seed in [("hf-bert", [1.0, -2.0]), ("hf-xlmr", [1.0, -2.0, 0.5]), ("hf-distilbert", [1.0, -2.0]), ("hf-electra", [1.0, -2.0]), ("hf-albert", [1.0, -2.0]),
                   ("hf-deberta", [1.0, -2.0]), ("hf-deberta-own", [1.0, -2.0]),
                   ("hf-modernbert", [1.0, -2.0]), ("hf-modernbert-biased", [1.0, -2.0])]:
    directory = f"Tests/TangentTests/Fixtures/{name}"
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
    with open(f"{directory}/reference.json", encoding="utf-8") as f:
        # Non-empty texts of a few lengths.
        cases = [c for c in json.load(f)["cases"] if len(c["ids"]) > 2][:8]
    ids = [c["ids"] for c in cases]
    weights = torch.tensor(seed)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def output(p, x):
        return (functional_call(model, p, (x.unsqueeze(0),)).logits[0] * weights).sum()

    # One text at a time, unpadded: transformers 5's mask code branches on the mask's
    # values, which vmap cannot trace, and without padding no mask is needed.
    grads = [grad(output)(params, torch.tensor(s)) for s in ids]
    per_example = {k: torch.stack([g[k] for g in grads]) for k in params}
    word = next(k for k in params if k.endswith(("word_embeddings.weight", "tok_embeddings.weight")))
    tensors, present = {}, []
    for b, s in enumerate(ids):
        rows = sorted(set(s))
        present.append(rows)
        for k, g in per_example.items():
            if k == word:
                tensors[f"{b}/word_rows"] = g[b][rows].contiguous()
            else:
                tensors[f"{b}/{k}"] = g[b].contiguous()
    save_file(tensors, f"{directory}/gradients.safetensors", metadata={"seed": json.dumps(seed), "ids": json.dumps(present),
                                                                         "torch": torch.__version__})
    print(f"wrote {directory}/gradients.safetensors: {len(ids)} texts, {len(per_example)} tensors")
