#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/hf-ARCH/ for each architecture named (all by
default): a tiny random ...ForSequenceClassification made with `transformers`, weights
drawn with std 0.2 so that every layer matters, the hf-bert fixture's 1,000-piece
WordPiece vocabulary saved as transformers 5 saves it (tokenizer.json), and
reference.json: the token ids and logits transformers gives for the same 502 texts as the
hf-bert fixture. Then run scripts/make_hf_gradient_fixtures.py for per-example gradients.

- distilbert: dim 32, 2 layers, 4 heads, hidden_dim 64, gelu.
- distilbert-sinusoidal: the same with sinusoidal_pos_embds, its position table left as
  transformers fills it (sines and cosines), every other weight drawn as above.
- electra: hidden 32, embedding_size 24 (projected by embeddings_project), 2 layers,
  4 heads, intermediate 64, gelu; ElectraClassificationHead (dense + GELU).
- albert: hidden 32, embedding_size 24, 3 layers over 2 groups of 2 shared inner layers,
  4 heads, intermediate 64, gelu_new; with the ALBERT tokenizer of
  scripts/make_albert_tokenizer_fixture.py (run it first) instead of the WordPiece one.
- deberta: DeBERTa-v3's settings (relative attention, pos_att_type p2c|c2p, shared key,
  position_buckets 16 over max_relative_positions 64 so that texts past 8 tokens reach
  the log buckets, layer-normed relative table, no absolute positions or token types),
  hidden 32, 2 layers, 4 heads, intermediate 64; with a DeBERTa tokenizer as the hub ships
  them: spm.model (a SentencePiece Unigram model of 1,000 pieces trained on the shipped
  texts, with DeBERTa's [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, then [MASK] after the pieces)
  and what transformers 5 saves beside it.
- modernbert: ModernBERT's defaults (no biases, first-token pooling) in small: hidden 32,
  3 layers (global, sliding, global: global_attn_every_n_layers 2), 4 heads, intermediate
  48, local_attention 16 so that texts past 9 tokens meet the window, rotary bases 160000
  and 10000; with the ModernBERT-style byte-level tokenizer.json of
  scripts/make_bpe_as_written_fixture.py (run it first).
- modernbert-biased: every bias flag on, mean pooling, gelu_new in the head, layer_types
  given (sliding, global, sliding), rope_parameters as transformers 5 writes them.
- deberta-own: DeBERTa-v2's other settings (own pos_key_proj / pos_query_proj, relative
  positions clamped at 24, raw table, absolute positions, 2 token types), same tokenizer.

Run from the repository root after make_hf_fixtures.py (installs what it needs):
    python3 scripts/make_hf_arch_fixtures.py [distilbert] [electra]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers", "safetensors", "torch", "sentencepiece",
                "protobuf"], check=True)
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (AlbertConfig, AlbertForSequenceClassification, AutoTokenizer, DebertaV2Config,  # noqa: E402
                          DebertaV2ForSequenceClassification, DebertaV2Tokenizer, DistilBertConfig,
                          DistilBertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification,
                          ModernBertConfig, ModernBertForSequenceClassification)

FIX = "Tests/TangentTests/Fixtures"
LABELS = dict(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})


def distilbert(vocab, sinusoidal=False):
    return DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128, activation="gelu",
        pad_token_id=0, sinusoidal_pos_embds=sinusoidal, **LABELS))


def electra(vocab):
    return ElectraForSequenceClassification(ElectraConfig(
        vocab_size=vocab, embedding_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=128, hidden_act="gelu", pad_token_id=0, **LABELS))


def albert(vocab):
    return AlbertForSequenceClassification(AlbertConfig(
        vocab_size=vocab, embedding_size=24, hidden_size=32, num_hidden_layers=3, num_hidden_groups=2, inner_group_num=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128, hidden_act="gelu_new", pad_token_id=0,
        **LABELS))


def deberta(vocab, own=False):
    settings = dict(position_buckets=-1, max_relative_positions=24, share_att_key=False, norm_rel_ebd="none",
                    position_biased_input=True, type_vocab_size=2) if own else \
        dict(position_buckets=16, max_relative_positions=64, share_att_key=True, norm_rel_ebd="layer_norm",
             position_biased_input=False, type_vocab_size=0)
    return DebertaV2ForSequenceClassification(DebertaV2Config(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=128, hidden_act="gelu", relative_attention=True, pos_att_type=["p2c", "c2p"],
        layer_norm_eps=1e-7, pad_token_id=0, **settings, **LABELS))


def deberta_tokenizer():
    """DeBERTa's spm.model trained on the shipped texts (kept in hf-deberta/ once made), read
    as transformers reads a hub directory holding it and its tokenizer_config.json."""
    import sentencepiece as spm
    kept = f"{FIX}/hf-deberta/spm.model"
    hub = tempfile.mkdtemp()
    if os.path.exists(kept):
        shutil.copy(kept, hub)
    else:
        with open(f"{hub}/corpus.txt", "w", encoding="utf-8") as f:
            for name in ["movie-snippets", "sms-spam", "trec6"]:
                with open(f"data/{name}/train.jsonl", encoding="utf-8") as d:
                    f.writelines(json.loads(line)["text"].replace("\n", " ") + "\n" for line in d)
        spm.SentencePieceTrainer.train(input=f"{hub}/corpus.txt", model_prefix=f"{hub}/spm", vocab_size=1000, model_type="unigram",
                                       pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
                                       unk_piece="[UNK]", character_coverage=0.9995, num_threads=1, minloglevel=2)
        for f in ["corpus.txt", "spm.vocab"]:
            os.remove(f"{hub}/{f}")
    with open(f"{hub}/tokenizer_config.json", "w") as f:
        json.dump({"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "split_by_punct": False, "bos_token": "[CLS]",
                   "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                   "mask_token": "[MASK]"}, f)
    with open(f"{hub}/config.json", "w") as f:
        json.dump({"model_type": "deberta-v2"}, f)
    return AutoTokenizer.from_pretrained(hub), f"{hub}/spm.model"


def modernbert(vocab, biased=False):
    tok = AutoTokenizer.from_pretrained(TOKENIZERS["modernbert"])
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
               cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id)
    settings = dict(norm_bias=True, attention_bias=True, mlp_bias=True, classifier_bias=True, classifier_pooling="mean",
                    classifier_activation="gelu_new", layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                    rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 160000.0},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}) if biased else \
        dict(global_attn_every_n_layers=2, global_rope_theta=160000.0, local_rope_theta=10000.0)
    return ModernBertForSequenceClassification(ModernBertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=128, local_attention=16, hidden_activation="gelu", **ids, **settings, **LABELS))


BUILDERS = {"distilbert": distilbert, "distilbert-sinusoidal": lambda v: distilbert(v, sinusoidal=True), "electra": electra, "albert": albert, "deberta": deberta,
            "deberta-own": lambda v: deberta(v, own=True), "modernbert": modernbert,
            "modernbert-biased": lambda v: modernbert(v, biased=True)}
TOKENIZERS = {"albert": f"{FIX}/albert-tokenizer/saved", "modernbert": f"{FIX}/bpe-as-written/plain",
              "modernbert-biased": f"{FIX}/bpe-as-written/plain"}
with open(f"{FIX}/hf-bert/reference.json", encoding="utf-8") as f:
    texts = [c["text"] for c in json.load(f)["cases"]]
for arch in sys.argv[1:] or list(BUILDERS):
    out = f"{FIX}/hf-{arch}"
    os.makedirs(out, exist_ok=True)
    if arch.startswith("deberta"):
        tok, spm_model = deberta_tokenizer()
    else:
        tok = AutoTokenizer.from_pretrained(TOKENIZERS.get(arch, f"{FIX}/hf-bert"))
    torch.manual_seed(2)
    model = BUILDERS[arch](len(tok))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if arch == "distilbert-sinusoidal" and "position_embeddings" in name:
                continue
            if "layer_norm" in name or "LayerNorm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if arch == "deberta":
        # As the hub ships DeBERTa tokenizers: spm.model beside what transformers 5 writes.
        shutil.copy(spm_model, out)
    cases = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=128, return_tensors="pt")
            cases.append({"text": t, "ids": enc["input_ids"][0].tolist(),
                          "logits": model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0].tolist()})
    with open(f"{out}/reference.json", "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f, ensure_ascii=False)
    print(f"wrote {out}: {len(cases)} texts, transformers {transformers.__version__}, torch {torch.__version__}")
