#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/hf-shipped/: checkpoints laid out as the common
pretrained ones ship, made with `transformers` from the tiny fixtures' configs:

- bert-pretraining/: a BertForPreTraining (cls.predictions.*, cls.seq_relationship.*),
  with the hf-bert vocabulary;
- bert-mlm/: a BertForMaskedLM (cls.predictions.*, no pooler);
- xlmr-mlm/: an XLMRobertaForMaskedLM (lm_head.*), with the XLM-R tokenizer;
- electra-discriminator/: an ElectraForPreTraining (discriminator_predictions.*), as
  google/electra-*-discriminator ship, from the hf-electra config;
- albert-pretraining/: an AlbertForPreTraining (predictions.*, sop_classifier.*), as
  albert-base-v2 ships, from the hf-albert config;
- deberta-mlm/: a DebertaV2ForMaskedLM (lm_predictions.lm_head.*), as
  microsoft/deberta-v3-* ship, from the hf-deberta config;
- modernbert-mlm/: a ModernBertForMaskedLM (head.*, decoder.bias), as
  answerdotai/ModernBERT-* ship, from the hf-modernbert config;
- bert-sharded/: the hf-bert classifier saved in shards of 100 KB
  (model.safetensors.index.json + model-0000i-of-0000n.safetensors), and
  reference.json: the logits transformers gives for a few texts.

Run from the repository root after make_hf_fixtures.py (installs what it needs):
    python3 scripts/make_hf_shipped_fixtures.py
"""
import json
import os
import shutil
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers", "safetensors", "torch", "protobuf",
                "sentencepiece"], check=True)
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertForMaskedLM,  # noqa: E402
                          AlbertForPreTraining, BertForPreTraining, DebertaV2ForMaskedLM, ElectraForPreTraining,
                          ModernBertForMaskedLM, XLMRobertaForMaskedLM)

FIX = "Tests/TangentTests/Fixtures"
OUT = f"{FIX}/hf-shipped"
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)


def fresh(config_dir, drop_labels=True):
    config = AutoConfig.from_pretrained(config_dir)
    if drop_labels:
        # As pretrained checkpoints ship: no task labels of their own.
        config.id2label = {0: "LABEL_0", 1: "LABEL_1"}
        config.label2id = {"LABEL_0": 0, "LABEL_1": 1}
        config.architectures = None
    return config


torch.manual_seed(3)
for name, cls, config_dir, tokenizer_dir in [("bert-pretraining", BertForPreTraining, f"{FIX}/hf-bert", f"{FIX}/hf-bert"),
                                              ("bert-mlm", BertForMaskedLM, f"{FIX}/hf-bert", f"{FIX}/hf-bert"),
                                              ("xlmr-mlm", XLMRobertaForMaskedLM, f"{FIX}/hf-xlmr", f"{FIX}/xlmr/saved"),
                                              ("electra-discriminator", ElectraForPreTraining, f"{FIX}/hf-electra", f"{FIX}/hf-electra"),
                                              ("albert-pretraining", AlbertForPreTraining, f"{FIX}/hf-albert", f"{FIX}/hf-albert"),
                                              ("deberta-mlm", DebertaV2ForMaskedLM, f"{FIX}/hf-deberta", f"{FIX}/hf-deberta"),
                                              ("modernbert-mlm", ModernBertForMaskedLM, f"{FIX}/hf-modernbert", f"{FIX}/hf-modernbert")]:
    model = cls(fresh(config_dir))
    model.save_pretrained(f"{OUT}/{name}")
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(f"{OUT}/{name}")

sharded = f"{OUT}/bert-sharded"
model = AutoModelForSequenceClassification.from_pretrained(f"{FIX}/hf-bert")
model.eval()
model.save_pretrained(sharded, max_shard_size="100KB")
tok = AutoTokenizer.from_pretrained(f"{FIX}/hf-bert")
tok.save_pretrained(sharded)
texts = ["A fine film .", "what a tedious , overlong mess", "Ça va? naïve café 東京"]
with torch.no_grad():
    cases = [{"text": t, "logits": model(**tok(t, return_tensors="pt")).logits[0].tolist()} for t in texts]
with open(f"{sharded}/reference.json", "w", encoding="utf-8") as f:
    json.dump({"transformers": transformers.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
for name in sorted(os.listdir(OUT)):
    print(name, sorted(os.listdir(f"{OUT}/{name}")))
