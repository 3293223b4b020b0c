#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/hf-edge/: what `transformers` does where a Hugging
Face directory is unusual, for the Swift tests to match.

- special-tokens.json: token ids and logits of texts that write special tokens literally
  ([CLS], [SEP], [MASK], [PAD], [UNK], <s>, </s>, <pad>, <unk>, <mask>, inside words,
  repeated, in other case) for the tiny BERT (hf-bert) and XLM-R (hf-xlmr with the
  tokenizer in xlmr/saved) fixtures;
- wordpiece-duplicate/: a vocab.txt whose pieces repeat (transformers keeps the last id)
  and the ids it gives;
- wordpiece-both/: a tokenizer.json and a vocab.txt that disagree (two pieces swapped in
  vocab.txt; transformers reads tokenizer.json) and the ids it gives;
- tokenizer-config-values.json: tokenizer_config.json values of the wrong type and whether
  transformers loads the tokenizer with them.

Run from the repository root after make_hf_fixtures.py (installs what it needs):
    python3 scripts/make_hf_edge_fixtures.py
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
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

FIX = "Tests/TangentTests/Fixtures"
OUT = f"{FIX}/hf-edge"
os.makedirs(OUT, exist_ok=True)

bert_texts = ["hello [CLS] world", "hello[SEP]x", "a [cls] b", "[MASK][MASK]", "x [PAD] y [UNK] z", "[CLS]", " [SEP] ",
              "what is [MASK] ?", "[[CLS]]", "[CLS][SEP][PAD]", "The [MASK] film was [UNK] .", "[PAD] [PAD] leading pads"]
xlmr_texts = ["hello <mask> world", "hello<mask>world", "a<s>b", "a </s> b", "x <pad>y", "<unk>", "hello  <mask>  world",
              "hello <MASK>", "a <s> </s> b", "<s> ", "<mas<mask>k>", "hello <mask>\t", "<pad><pad> two pads first",
              "a <pad> b <pad> c"]


def cases(model_dir, tokenizer_dir, texts):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.eval()
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            out.append({"text": t, "ids": enc["input_ids"][0].tolist(), "logits": model(**enc).logits[0].tolist()})
    return out


special = {"transformers": transformers.__version__, "torch": torch.__version__,
           "bert": cases(f"{FIX}/hf-bert", f"{FIX}/hf-bert", bert_texts),
           "xlmr": cases(f"{FIX}/hf-xlmr", f"{FIX}/xlmr/saved", xlmr_texts)}
with open(f"{OUT}/special-tokens.json", "w", encoding="utf-8") as f:
    json.dump(special, f, ensure_ascii=False, indent=1)

texts = ["Hello world, a fine film .", "what is x ?", "world x world", "Ça va? naïve café 東京"]
vocab = open(f"{FIX}/hf-bert/vocab.txt", encoding="utf-8").read().split("\n")
if vocab[-1] == "":
    vocab.pop()
world, x = vocab.index("world"), vocab.index("x")


def write_ids(directory, tokenizer):
    with open(f"{directory}/ids.json", "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__,
                   "cases": [{"text": t, "ids": tokenizer(t)["input_ids"]} for t in texts]}, f, ensure_ascii=False, indent=1)


# Repeated pieces: 'world' also at id 10 (before its own id), 'x' also at the last id.
dup = f"{OUT}/wordpiece-duplicate"
os.makedirs(dup, exist_ok=True)
v = list(vocab)
v[10], v[-1] = vocab[world], vocab[x]
open(f"{dup}/vocab.txt", "w", encoding="utf-8").write("\n".join(v) + "\n")
shutil.copy(f"{FIX}/hf-bert/tokenizer_config.json", dup)
write_ids(dup, AutoTokenizer.from_pretrained(dup))

# tokenizer.json as transformers 5 saves it, and a vocab.txt with two pieces swapped.
both = f"{OUT}/wordpiece-both"
os.makedirs(both, exist_ok=True)
AutoTokenizer.from_pretrained(f"{FIX}/hf-bert").save_pretrained(both)
v = list(vocab)
v[world], v[x] = vocab[x], vocab[world]
open(f"{both}/vocab.txt", "w", encoding="utf-8").write("\n".join(v) + "\n")
write_ids(both, AutoTokenizer.from_pretrained(both))
# tokenizer_config.json values of the wrong type: whether transformers loads the tokenizer
# (tangent must refuse at least every one that transformers refuses).
edits = [("do_lower_case", "no"), ("do_lower_case", 1), ("strip_accents", "x"), ("strip_accents", 1), ("tokenize_chinese_chars", 1),
         ("model_max_length", -1), ("model_max_length", "8"), ("model_max_length", 2.5), ("do_lower_case", False), ("model_max_length", 64)]
outcomes = []
for field, value in edits:
    d = f"{OUT}/scratch"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    shutil.copy(f"{FIX}/hf-bert/vocab.txt", d)
    config = json.load(open(f"{FIX}/hf-bert/tokenizer_config.json"))
    config[field] = value
    json.dump(config, open(f"{d}/tokenizer_config.json", "w"))
    try:
        AutoTokenizer.from_pretrained(d)("Hello World a b c", truncation=True)
        outcomes.append({"field": field, "value": value, "transformers": "loads"})
    except Exception as e:  # noqa: BLE001 - any failure is what is recorded
        outcomes.append({"field": field, "value": value, "transformers": f"fails: {type(e).__name__}"})
    shutil.rmtree(d)
with open(f"{OUT}/tokenizer-config-values.json", "w", encoding="utf-8") as f:
    json.dump({"transformers": transformers.__version__, "cases": outcomes}, f, indent=1)
print(f"wrote {OUT}: {len(bert_texts)} + {len(xlmr_texts)} special-token texts, {len(outcomes)} tokenizer_config values, transformers {transformers.__version__}")
