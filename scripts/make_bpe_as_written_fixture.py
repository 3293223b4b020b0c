#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/bpe-as-written/: byte-level BPE tokenizer.json files
laid out as ModernBERT's (a BPE model behind a ByteLevel pre-tokenizer, no normalizer,
TemplateProcessing `[CLS] $A [SEP]`, added [UNK] [CLS] [SEP] [PAD] and [MASK] with lstrip),
which transformers 5 loads as written (TokenizersBackend, as for every ModernBERT
checkpoint): plain/ (add_prefix_space false) and prefix/ (true, in the file), built with
`tokenizers` from the byte-level BPE fixture's vocab.json and merges.txt; and the ids
transformers gives for the 1,231 texts of that fixture: ids-plain.jsonl, ids-prefix.jsonl.

Run from the repository root after scripts/make_bpe_fixture.py (installs what it needs):
    python3 scripts/make_bpe_as_written_fixture.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers"], check=True)
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import BPE  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

SRC = "Tests/TangentTests/Fixtures/bpe"
OUT = "Tests/TangentTests/Fixtures/bpe-as-written"
with open(f"{SRC}/ids.jsonl", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
texts += ["[CLS] x [SEP] y [MASK] z [PAD] [UNK]", "a [MASK]b", "  [MASK]  "]
for name, prefix in [("plain", False), ("prefix", True)]:
    tok = Tokenizer(BPE.from_file(f"{SRC}/vocab.json", f"{SRC}/merges.txt"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("[UNK]"), AddedToken("[CLS]"), AddedToken("[SEP]"), AddedToken("[PAD]"),
                            AddedToken("[MASK]", lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    out = f"{OUT}/{name}"
    os.makedirs(out, exist_ok=True)
    tok.save(f"{out}/tokenizer.json")
    with open(f"{out}/tokenizer_config.json", "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                   "unk_token": "[UNK]", "mask_token": "[MASK]", "model_max_length": 8192}, f, indent=1)
    work = tempfile.mkdtemp()
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(f"{out}/{f}", work)
    with open(f"{work}/config.json", "w") as f:
        json.dump({"model_type": "modernbert"}, f)
    hf = AutoTokenizer.from_pretrained(work)
    with open(f"{OUT}/ids-{name}.jsonl", "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t, "ids": hf(t)["input_ids"]}, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {len(texts)} texts, {type(hf).__name__}, transformers {transformers.__version__}")
