#!/usr/bin/env python3
"""Makes KVScope's golden fixtures: tiny HF models of every supported Llama-family variant, the
tokenizers they use, and HF transformers' fp32 reference outputs for them.

Run on the GPU machine (its python3 has torch, transformers, tokenizers, sentencepiece,
safetensors):

    python3 tools/golden/make_fixtures.py --out tests/golden --corpus CORPUS.txt

What it writes (all under --out):
  tokenizers/bytelevel/tokenizer.json      byte-level BPE, Llama-3-style split regex, BOS template
  tokenizers/gpt2/tokenizer.json           byte-level BPE with the GPT-2 pre-tokenizer
  tokenizers/sp_bpe/tokenizer.json         SentencePiece-style BPE (Prepend/Replace normaliser,
                                           byte fallback), like Llama-2's newer tokenizer.json
  tokenizers/sp_metaspace/tokenizer.json   the same model behind a Metaspace pre-tokenizer
  tokenizers/spm/tokenizer.model           a sentencepiece BPE model (byte fallback)
  tokenizers/spm/tokenizer.bin             the same vocabulary in llama2.c's tokenizer.bin format
  tokenizers/encodings.json                reference ids and decodes of hard strings, per tokenizer
  models/<variant>/                        save_pretrained output (config.json, safetensors, ...)
  ref/<variant>.json                       fp32 eager logits, greedy continuations, attention stats

Every random choice is seeded; re-running gives the same files on the same library versions.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import torch

HARD_STRINGS = [
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "a   b    c",
    "tabs\tand\ttabs",
    "line one\nline two\n\n\nfour newlines\n",
    "\n",
    "",
    "x",
    "don't I'm we'll they've she'd",
    "Digits 1234567890 and 3.14159 and 1,000,000",
    "naïve café résumé — “quotes” and ‘single’",
    "Ünïcödé ñ ß Ø å",
    "emoji 😀 👍🏽 👨‍👩‍👧 🚀!",
    "中文字符测试，你好世界。",
    "日本語のテキストです",
    "한국어 텍스트",
    "Ελληνικά και русский текст",
    "mixed:abc123DEF!!!???...",
    "trailing spaces   ",
    "<s> literal angle s and </s>",
    "<0x41> is not a byte token here",
    "<|begin_of_text|>special at start",
    "middle <|end_of_text|> special",
    "<|endoftext|> gpt2 special",
    "code: def f(x):\n    return x**2  # square\n",
    "URL https://example.org/a?b=c&d=e",
    "The quick brown fox jumps over the lazy dog. " * 3,
]

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def read_corpus(path, limit=600_000):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(limit)
    lines = [l for l in text.split("\n") if l.strip()]
    return lines


def train_bytelevel(lines, out_dir, style):
    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    if style == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
        vocab = 512
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<|endoftext|>"]
        vocab = 400
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    if style == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    return tok


def train_sp_bpe(lines, out_dir, style):
    """SentencePiece-style BPE in tokenizer.json form, with <0xNN> byte-fallback tokens in the
    model vocabulary (not added tokens), as Llama-2's tokenizer.json has them."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Train with a splitting Metaspace so merges never cross word boundaries.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    if style == "normalizer":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                               normalizers.Replace(" ", "\u2581")])
        tok.pre_tokenizer = None
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                     split=False)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(
            replacement="\u2581", prepend_scheme="first", split=False)])
    from tokenizers import processors
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    # Byte tokens live in the model vocabulary only: drop them from added_tokens.
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    return Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))


def train_spm(corpus_lines, out_dir):
    import sentencepiece as spm
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "_train.txt")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus_lines))
    spm.SentencePieceTrainer.train(
        input=tmp, model_prefix=os.path.join(out_dir, "tokenizer"), vocab_size=700, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True, character_coverage=0.9995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=8, minloglevel=2)
    os.remove(tmp)
    os.remove(os.path.join(out_dir, "tokenizer.vocab"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))
    write_llama2c_tokenizer(sp, os.path.join(out_dir, "tokenizer.bin"))
    return sp


def write_llama2c_tokenizer(sp, path):
    """llama2.c tokenizer.bin: int32 max_token_length, then per id: float32 score, int32 len, bytes.
    Pieces have U+2581 replaced by a space; BOS/EOS are written as "\\n<s>\\n" / "\\n</s>\\n"."""
    import struct
    pieces = []
    for i in range(sp.get_piece_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        pieces.append((t.replace("\u2581", " ").encode("utf-8"), sp.get_score(i)))
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(b) for b, _ in pieces)))
        for b, s in pieces:
            f.write(struct.pack("<fi", s, len(b)))
            f.write(b)


def reference_encodings(toks, sp, out_path):
    out = {}
    for name, tok in toks.items():
        rows = []
        for s in HARD_STRINGS:
            plain = tok.encode(s, add_special_tokens=False).ids
            special = tok.encode(s, add_special_tokens=True).ids
            rows.append({"text": s, "ids": plain, "ids_special": special,
                         "decoded": tok.decode(plain, skip_special_tokens=False),
                         "decoded_skip": tok.decode(special, skip_special_tokens=True)})
        out[name] = rows
    rows = []
    for s in HARD_STRINGS:
        ids = sp.encode(s)
        rows.append({"text": s, "ids": ids, "ids_special": [sp.bos_id()] + ids, "decoded": sp.decode(ids),
                     "decoded_skip": sp.decode(ids)})
    out["spm"] = rows
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)


# name -> (transformers class name, config kwargs, storage dtype, tokenizer dir, shard size)
def variants(v_byte, v_sp):
    base = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-5,
                initializer_range=0.08)
    return {
        "llama2": ("LlamaForCausalLM", dict(base, vocab_size=v_byte), torch.float32, "bytelevel", None),
        "llama3_tied": ("LlamaForCausalLM", dict(base, vocab_size=v_byte, num_key_value_heads=2,
                        tie_word_embeddings=True, rope_theta=500000.0,
                        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                          high_freq_factor=4.0, original_max_position_embeddings=64)),
                        torch.bfloat16, "bytelevel", None),
        "mistral_gqa4": ("MistralForCausalLM", dict(base, vocab_size=v_byte, num_attention_heads=8,
                         num_key_value_heads=2, sliding_window=4096), torch.float16, "bytelevel", None),
        "qwen2_bias": ("Qwen2ForCausalLM", dict(base, vocab_size=v_byte, num_key_value_heads=2,
                       rope_theta=1000000.0, use_sliding_window=False, tie_word_embeddings=False),
                       torch.bfloat16, "bytelevel", None),
        "qwen3_qknorm": ("Qwen3ForCausalLM", dict(base, vocab_size=v_byte, num_key_value_heads=2,
                         head_dim=32, rope_theta=1000000.0, use_sliding_window=False,
                         tie_word_embeddings=False, attention_bias=False), torch.bfloat16, "bytelevel", None),
        "llama_headdim_sharded": ("LlamaForCausalLM", dict(base, vocab_size=v_byte, hidden_size=96,
                                  num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                  intermediate_size=192), torch.float32, "bytelevel", "100KB"),
        "llama_sp": ("LlamaForCausalLM", dict(base, vocab_size=v_sp), torch.float32, "sp_bpe", None),
    }


def reset_seed(s):
    torch.manual_seed(s)


@torch.no_grad()
def reference_outputs(model, prompts, n_new=12):
    out = {"prompts": []}
    for ids in prompts:
        x = torch.tensor([ids])
        res = model(x, output_attentions=True)
        logits = res.logits[0].float()
        attn = [a[0].float() for a in res.attentions]  # per layer [heads, q, k]
        gen = model.generate(x, max_new_tokens=n_new, do_sample=False, min_new_tokens=n_new,
                             pad_token_id=0, eos_token_id=None)
        out["prompts"].append({
            "ids": ids,
            "logits": [[float(v) for v in row] for row in logits],
            "greedy": gen[0, len(ids):].tolist(),
            # column sums over query rows, per layer, per query head: [L][H][N]
            "attn_colsum": [[[float(v) for v in h.sum(0)] for h in a] for a in attn],
            # last query row, per layer, per query head: [L][H][N]
            "attn_last_row": [[[float(v) for v in h[-1]] for h in a] for a in attn],
        })
    return out


def make_model(cls_name, kwargs, seed):
    import transformers
    cfg_cls = getattr(transformers, cls_name.replace("ForCausalLM", "Config"))
    cls = getattr(transformers, cls_name)
    cfg = cfg_cls(**kwargs)
    reset_seed(seed)
    model = cls(cfg)
    # Random but non-trivial norms and biases (HF initialises them to 1 / 0).
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.data = 1.0 + 0.2 * torch.randn_like(p)
        if name.endswith(".bias"):
            p.data = 0.1 * torch.randn_like(p)
    return model


def train_small(model, tok, lines, seconds, device):
    """A few seconds of next-token training on the corpus so the fixture writes English-like text
    (a random model cannot show that generation streams fluent output)."""
    text = "\n".join(lines)
    ids = tok.encode(text, add_special_tokens=False).ids
    data = torch.tensor(ids, dtype=torch.long, device=device)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    seq, bs, step, t0 = 128, 64, 0, time.time()
    g = torch.Generator(device="cpu").manual_seed(0)
    while time.time() - t0 < seconds:
        starts = torch.randint(0, len(ids) - seq - 1, (bs,), generator=g).to(device)
        idx = starts[:, None] + torch.arange(seq + 1, device=device)[None]
        batch = data[idx]
        logits = model(batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            print(f"  train step {step} loss {loss.item():.3f}", flush=True)
    model.cpu().eval()
    return step, float(loss.item())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--train-seconds", type=float, default=90)
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out
    for sub in ("tokenizers", "models", "ref"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    lines = read_corpus(args.corpus)

    import tokenizers
    import transformers
    print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers",
          tokenizers.__version__, flush=True)
    tdir = os.path.join(out, "tokenizers")
    toks = {
        "bytelevel": train_bytelevel(lines, os.path.join(tdir, "bytelevel"), "llama3"),
        "gpt2": train_bytelevel(lines, os.path.join(tdir, "gpt2"), "gpt2"),
        "sp_bpe": train_sp_bpe(lines, os.path.join(tdir, "sp_bpe"), "normalizer"),
        "sp_metaspace": train_sp_bpe(lines, os.path.join(tdir, "sp_metaspace"), "metaspace"),
    }
    sp = train_spm(lines, os.path.join(tdir, "spm"))
    reference_encodings(toks, sp, os.path.join(tdir, "encodings.json"))
    print("tokenizers done", flush=True)

    v_byte = toks["bytelevel"].get_vocab_size()
    v_sp = toks["sp_bpe"].get_vocab_size()
    os.makedirs(os.path.join(out, "ref"), exist_ok=True)
    for i, (name, (cls_name, kw, dtype, tok_name, shard)) in enumerate(variants(v_byte, v_sp).items()):
        tok = toks[tok_name]
        bos = tok.token_to_id("<|begin_of_text|>") if tok_name == "bytelevel" else tok.token_to_id("<s>")
        eos = tok.token_to_id("<|end_of_text|>") if tok_name == "bytelevel" else tok.token_to_id("</s>")
        kw = dict(kw, bos_token_id=bos, eos_token_id=eos)
        model = make_model(cls_name, kw, seed=1000 + i)
        info = {}
        if name == "llama_sp":
            steps, loss = train_small(model, tok, lines, args.train_seconds, device)
            info = {"train_steps": steps, "final_loss": loss}
            print(f"  {name}: trained {steps} steps, loss {loss:.3f}", flush=True)
        model = model.to(dtype)
        mdir = os.path.join(out, "models", name)
        if shard:
            model.save_pretrained(mdir, max_shard_size=shard, safe_serialization=True)
        else:
            model.save_pretrained(mdir, safe_serialization=True)
        shutil.copy(os.path.join(tdir, tok_name, "tokenizer.json"), os.path.join(mdir, "tokenizer.json"))
        # Reference: reload as stored, upcast to fp32, eager attention.
        try:
            ref_model = getattr(transformers, cls_name).from_pretrained(
                mdir, dtype=torch.float32, attn_implementation="eager").eval()
        except TypeError:  # transformers < 4.56 names it torch_dtype
            ref_model = getattr(transformers, cls_name).from_pretrained(
                mdir, torch_dtype=torch.float32, attn_implementation="eager").eval()
        g = torch.Generator().manual_seed(7 + i)
        prompts = [torch.randint(3, kw["vocab_size"], (7,), generator=g).tolist(),
                   torch.randint(3, kw["vocab_size"], (23,), generator=g).tolist()]
        if name == "llama_sp":
            prompts.append(tok.encode("A gift of a flower will soon be made", add_special_tokens=True).ids)
        ref = reference_outputs(ref_model, prompts)
        ref.update({"variant": name, "class": cls_name, "storage_dtype": str(dtype), "tokenizer": tok_name,
                    "torch": torch.__version__, "transformers": transformers.__version__, **info})
        with open(os.path.join(out, "ref", name + ".json"), "w") as f:
            json.dump(ref, f)
        print(f"model {name} done", flush=True)


if __name__ == "__main__":
    main()
