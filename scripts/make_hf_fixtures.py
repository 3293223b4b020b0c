#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/hf-bert/: a tiny random BertForSequenceClassification
made with `transformers` (hidden 32, 2 layers, 4 heads, intermediate 64, a 1,000-piece
uncased WordPiece vocabulary trained on the shipped training texts; weights drawn with
std 0.2 so that every layer matters to the logits), saved with save_pretrained
(config.json, model.safetensors, vocab.txt, tokenizer_config.json), and reference.json:
the token ids and logits `transformers` gives for 500 texts of the shipped data and a few
hand-made ones. The Swift tests check the toolkit's BERT against them.

Run from the repository root (installs what it needs):
    python3 scripts/make_hf_fixtures.py
"""
import json
import os
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers", "safetensors", "torch"], check=True)
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import BertWordPieceTokenizer  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer  # noqa: E402


def randomize(model):
    """Weights with std 0.2 (LayerNorm weights around 1), so that every layer matters to the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.eval()


OUT = "Tests/TangentTests/Fixtures/hf-bert"
os.makedirs(OUT, exist_ok=True)
train = []
for name in ["movie-snippets", "sms-spam", "trec6"]:
    with open(f"data/{name}/train.jsonl", encoding="utf-8") as f:
        train += [json.loads(line)["text"] for line in f]
wp = BertWordPieceTokenizer(lowercase=True)
wp.train_from_iterator(train, vocab_size=1000, min_frequency=2, show_progress=False)
wp.save_model(OUT)  # vocab.txt
with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True}, f)
# BertTokenizer(vocab_file=...) builds a 5-token vocabulary in transformers 5: load the folder.
tok = BertTokenizer.from_pretrained(OUT)
assert len(tok) == sum(1 for _ in open(os.path.join(OUT, "vocab.txt"), encoding="utf-8")), len(tok)
torch.manual_seed(0)
config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=128, num_labels=2, id2label={0: "negative", 1: "positive"},
                    label2id={"negative": 0, "positive": 1}, hidden_act="gelu", layer_norm_eps=1e-12)
model = BertForSequenceClassification(config)
randomize(model)
model.save_pretrained(OUT)
tok.save_pretrained(OUT)
texts = ["", "A fine film .", "Ça va? naïve café 東京 😀", "word " * 200]
for name in ["movie-snippets", "sms-spam", "trec6"]:
    with open(f"data/{name}/test.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in list(f)[:166]]
cases = []
with torch.no_grad():
    for t in texts:
        enc = tok(t, truncation=True, max_length=128, return_tensors="pt")
        logits = model(**enc).logits[0].tolist()
        cases.append({"text": t, "ids": enc["input_ids"][0].tolist(), "logits": logits})
with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f, ensure_ascii=False)
for name in os.listdir(OUT):
    if name not in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "reference.json"):
        os.remove(os.path.join(OUT, name))
print(f"wrote {OUT}: {len(cases)} texts, transformers {transformers.__version__}, torch {torch.__version__}")

# A tiny random XLMRobertaForSequenceClassification (RoBERTa-family layout: positions
# offset by padding_idx + 1, a dense + tanh head on <s>, gelu_new) with the XLM-R
# SentencePiece fixture, and the ids and logits transformers gives.
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaTokenizer  # noqa: E402

OUT = "Tests/TangentTests/Fixtures/hf-xlmr"
os.makedirs(OUT, exist_ok=True)
xtok = XLMRobertaTokenizer.from_pretrained("Tests/TangentTests/Fixtures/xlmr")
torch.manual_seed(1)
xconfig = XLMRobertaConfig(vocab_size=len(xtok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           max_position_embeddings=130, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2},
                           hidden_act="gelu_new", layer_norm_eps=1e-5)
xmodel = XLMRobertaForSequenceClassification(xconfig)
randomize(xmodel)
xmodel.save_pretrained(OUT)
cases = []
with torch.no_grad():
    for t in texts:
        enc = xtok(t, truncation=True, max_length=128, return_tensors="pt")
        cases.append({"text": t, "ids": enc["input_ids"][0].tolist(), "logits": xmodel(**enc).logits[0].tolist()})
with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f, ensure_ascii=False)
for name in os.listdir(OUT):
    if name not in ("config.json", "model.safetensors", "reference.json"):
        os.remove(os.path.join(OUT, name))
print(f"wrote {OUT}: {len(cases)} texts")
