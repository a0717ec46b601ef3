#!/usr/bin/env python3
"""Trains KVScope's bundled demo model: a small Llama (LlamaForCausalLM, grouped-query attention)
that reads English and finds needles (passkey, NIAH) at every depth of a 4096-token context.

Run on the GPU machine (python3 with torch, transformers, tokenizers, safetensors), from the
repository root, after tools/train_demo/build_corpus.py:

    python3 tools/train_demo/train.py --corpus .devcarry/demo/corpus --out OUT_DIR

Stages: (1) byte-level BPE tokenizer (8192 tokens, Llama-3-style split, BOS template) trained on
the training split; (2) token stream of the natural text and sentence pools for haystacks (as
written, and with each sentence's words shuffled); (3) a check that SDPA's attention gradients
agree with eager attention (else a slower SDPA backend is used); (4) training, 64k tokens a step,
on rows whose length follows --curriculum (512 tokens first, 4096 at the end: copying is learned at
short range first). Row kinds (default shares in row_mix.py; --mix / --early-mix override them):
natural text; a random token sequence shown twice (dense copy targets); passkey; single- and
multi-needle NIAH with every needle queried; key-value lookup with several queries; "needles"
(issue 12): the train-split templates of resources/needles/templates.json (template families whose
alternations "((A|B))" are drawn per prompt, so no fixed wording repeats; formats x entity kinds x
question forms, several needles, distractors) in the training haystacks (the training split's
sentences, as written or word-shuffled); "needles_dense" (off by default): short contexts made
mostly of train-split needles and distractors, 2-5 asked (needle_rows.py); "needles_free" (off by
default): needles whose key, attribute, value, layout, framing and question are all drawn anew per
row from the training words (free_needles.py), so no wording repeats. Held-out families and
haystack sources are never drawn for training. The tasks are built by tools/train_demo/scenarios.py
exactly as KVScope's C++ builders build them, and rows are filled up with natural text. Loss on
every token; answer digits weighted x5; needle digits and the first copy of a random sequence
weight 0 (unpredictable). A quick retrieval probe (probe.py: passkey, niah, needles-train,
needles-heldout, counted apart) is logged every --probe-every seconds; (5) save (bf16 safetensors,
tokenizer.json, generation_config.json); (6) held-out perplexity and the accuracy grid with HF
transformers on the saved bf16 weights upcast to fp32, logged to train_log.json: passkey, niah, and
needles per split (needles-train: train templates in resources/haystacks; needles-heldout: held-out
templates in the held-out haystack source), reported separately; `kvscope eval needles` builds the
same prompts.

Training stops by wall clock (--train-seconds); the learning-rate schedule and the curriculum
follow elapsed time, so the number of steps depends on the GPU (train_log.json records it).
"""
import argparse
import json
import math
import os
import random
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import free_needles as FN  # noqa: E402
from hf_eval import grid_summary, perplexity, print_grid  # noqa: E402
import needle_rows as R  # noqa: E402
import probe as P  # noqa: E402
import row_mix as M  # noqa: E402
import scenarios as S  # noqa: E402

T0 = time.time()
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
ANSWER_WEIGHT = 5.0
# Running text only ("natural" rows), never haystack filler: "A x is y." reads like a needle.
STREAM_ONLY_SOURCES = {"wordnet"}
EVAL_RESERVE = 10  # tokens kept free for the answer: a context of L holds a prompt of L - 10


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


# ---------------------------------------------------------------------------------------------
# tokenizer


class Tok:
    """The HF tokenizer behind the encode(text, add_special) interface of scenarios.py."""

    def __init__(self, hf):
        self.hf = hf
        self.bos = hf.token_to_id(SPECIALS[0])
        self.eos = hf.token_to_id(SPECIALS[1])
        self.pad = hf.token_to_id(SPECIALS[2])

    def encode(self, text, add_special):
        return self.hf.encode(text, add_special_tokens=add_special).ids

    def decode(self, ids):
        return self.hf.decode(ids, skip_special_tokens=True)


def train_tokenizer(docs, vocab_size, path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator((d["text"] for d in docs), trainer=trainer)
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A {SPECIALS[0]} $B",
        special_tokens=[(SPECIALS[0], bos)])
    tok.save(path)
    return Tokenizer.from_file(path)


# ---------------------------------------------------------------------------------------------
# data


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def token_stream(tok, docs):
    """Docs -> one int32 stream, each doc followed by <|end_of_text|>."""
    encs = tok.hf.encode_batch([d["text"] for d in docs], add_special_tokens=False)
    parts = []
    for e in encs:
        parts.append(np.asarray(e.ids, dtype=np.int32))
        parts.append(np.asarray([tok.eos], dtype=np.int32))
    return np.concatenate(parts)


def shuffled_sentences(sentences, seed):
    """Each sentence with its words in random order: text no model can have memorised, so NIAH
    also trains on haystacks as unfamiliar as the held-out ones used for evaluation."""
    rng = random.Random(seed)
    out = []
    for s in sentences:
        w = s.split(" ")
        rng.shuffle(w)
        out.append(" ".join(w))
    return out


class TaskRows(torch.utils.data.IterableDataset):
    """Endless micro-batches (ids [rows, seq+1], weights [rows, seq]) of batch_tokens tokens; the
    row length `seq` is read from a shared value the training loop moves along the curriculum."""

    def __init__(self, tok, stream, pools, city_keys, word_keys, shared_seq, batch_tokens, seed,
                 templates, mixes=(M.EARLY_ROW_KINDS, M.ROW_KINDS), cue_dropout=0.0,
                 free_natural=False):
        super().__init__()
        # Cue dropout (--cue-dropout): framing words drawn from the training sentences' words.
        self.cue_dropout = cue_dropout
        words = R.corpus_words(pools[0][0][:20000])
        self.cue_words = words if cue_dropout > 0 else []
        # needles_free rows (free_needles.py): every part of a needle drawn anew per row.
        self.free = FN.FreeNeedles(words, templates, free_natural,
                                   FN.proper_nouns(pools[0][0]) if free_natural else ())
        self.early_mix, self.mix = mixes  # [(kind, share)]: rows <= M.EARLY_MAX_SEQ, longer rows
        self.templates = templates  # scenarios.load_templates(); only split "train" is drawn
        self.tok, self.stream, self.pools = tok, stream, pools  # pools: [(sentences, counter)]
        self.city_keys, self.word_keys = city_keys, word_keys
        self.shared_seq, self.batch_tokens, self.seed = shared_seq, batch_tokens, seed
        self.seq = shared_seq.value
        self.n_vocab = tok.hf.get_vocab_size()

    def natural(self, rng, n):
        off = rng.randrange(0, len(self.stream) - n - 1)
        return self.stream[off:off + n]

    def prompt_length(self, rng, reserve):
        hi = self.seq - reserve
        lo = max(160, self.seq - 512) if rng.random() < 0.35 else 160
        return rng.randint(min(lo, hi), hi)

    def depth(self, rng):
        u = rng.random()
        return 0.0 if u < 0.1 else 1.0 if u < 0.2 else rng.random()

    def task_text(self, kind, rng):
        """-> (text, [(char_begin, char_end, weight)]): the prompt with its answer(s) appended;
        spans weight the answer digits and zero the needles' unpredictable digits."""
        spans = []
        if kind == "passkey":
            b = S.build_passkey(self.tok, self.prompt_length(rng, EVAL_RESERVE), self.depth(rng),
                                rng.getrandbits(64))
            qas = []
        elif kind in ("needles", "needles_dense"):
            return self.needles_text(rng, kind == "needles_dense")
        elif kind == "needles_free":
            sentences, count = self.pools[0] if rng.random() < 0.7 else self.pools[1]
            text, spans, _facts, _asked = self.free.row_text(
                self.tok, rng, sentences, count, self.prompt_length(rng, EVAL_RESERVE),
                ANSWER_WEIGHT)
            return text, spans
        elif kind in ("niah", "niah_multi"):
            nn = 1 if kind == "niah" else rng.randint(2, 6)
            keys = self.city_keys if rng.random() < 0.5 else self.word_keys
            sentences, count = self.pools[0] if rng.random() < 0.7 else self.pools[1]
            b = S.build_niah(self.tok, self.prompt_length(rng, EVAL_RESERVE + 32 * (nn - 1)),
                             self.depth(rng), rng.getrandbits(64), sentences, keys, nn, count)
            others = [j for j in range(nn) if j != b["query"]]
            rng.shuffle(others)
            qas = [(S.NIAH_QUESTION.format(k=b["keys"][j]), b["values"][j]) for j in others]
        else:
            return self.kv_text(rng)
        text = b["text"]
        spans += [(a, z, 0.0) for a, z in b["needle_spans"]]
        text += " "
        spans.append((len(text), len(text) + len(b["answer"]), ANSWER_WEIGHT))
        text += b["answer"] + "."
        for q, v in qas:
            text += "\n\n" + q + " "
            spans.append((len(text), len(text) + len(v), ANSWER_WEIGHT))
            text += v + "."
        return text, spans

    def needles_text(self, rng, dense=False):
        """Train-split templates in a training haystack. needles: 1-4 needles (every one asked,
        the built one first) and 0-3 distractors (never asked); needles_dense
        (needle_rows.dense_needles): 4-10 needles, 2-6 distractors, little haystack, 2-5 asked."""
        if not dense:
            nn = 1 if rng.random() < 0.5 else rng.randint(2, 4)
            nd = 0 if rng.random() < 0.5 else rng.randint(1, 3)
        sentences, count = self.pools[0] if rng.random() < 0.7 else self.pools[1]
        if dense:
            b, nn, asked = R.dense_needles(self.tok, rng, self.templates, sentences, count,
                                           self.seq - EVAL_RESERVE, self.depth(rng))
        else:
            reserve = EVAL_RESERVE + 40 * (nn - 1)
            b = S.build_needles(self.tok, self.prompt_length(rng, reserve + 24 * (nn + nd)),
                                self.depth(rng), rng.getrandbits(64), sentences, self.templates,
                                "train", nn, nd, count)
            asked = nn
        return R.answered_text(b, self.templates, rng, nn, asked, ANSWER_WEIGHT,
                               self.cue_dropout, self.cue_words)

    def kv_text(self, rng):
        """Dense key-value lookup: many "The code for KEY is N." records, then several queries."""
        nq = rng.randint(1, 12)
        length = self.prompt_length(rng, EVAL_RESERVE + 24 * nq)
        intro = "Here is a list of codes. Remember them."
        recs, budget = [], length - 40
        for k in rng.sample(self.word_keys, min(400, len(self.word_keys))):
            rec = (k, str(rng.randrange(1000, 10000000)))
            cost = len(self.tok.encode(f" The code for {rec[0]} is {rec[1]}.", False))
            if budget < cost:
                break
            budget -= cost
            recs.append(rec)
        if not recs:
            recs.append((self.word_keys[0], "1234"))
        text = intro + "\n\n" + " ".join(f"The code for {k} is {v}." for k, v in recs)
        spans = []
        for k, v in rng.sample(recs, min(nq, len(recs))):
            text += f"\n\nWhat is the code for {k}? The code for {k} is "
            spans.append((len(text), len(text) + len(v), ANSWER_WEIGHT))
            text += v + "."
        return text, spans

    def repeat_row(self, rng, n):
        """BOS, text, X, text, X, text: X is m random tokens; its second copy is the target."""
        # Log-uniform sizes: mostly short copies at short distances, where induction forms first.
        m = int(math.exp(rng.uniform(math.log(8), math.log(min(512, (n - 1) // 4)))))
        x = np.asarray([rng.randrange(3, self.n_vocab) for _ in range(m)], dtype=np.int64)
        gap = int(math.exp(rng.uniform(0, math.log(n - 2 * m)))) - 1
        lead = rng.randint(0, n - 1 - 2 * m - gap)
        tail = n - 1 - 2 * m - gap - lead
        ids = np.concatenate([[self.tok.bos], self.natural(rng, lead), x, self.natural(rng, gap),
                              x, self.natural(rng, tail)]).astype(np.int64)
        w = np.ones(self.seq, dtype=np.float32)
        first = 1 + lead  # token index of X's first copy
        second = first + m + gap
        w[first - 1:first - 1 + m] = 0.0  # random tokens: unpredictable
        w[second - 1] = 0.0  # the second copy's first token cannot be known either
        return ids, w

    def row(self, rng, kinds, shares):
        n = self.seq + 1
        while True:
            kind = rng.choices(kinds, shares)[0]
            if kind == "natural":
                ids = np.concatenate([[self.tok.bos], self.natural(rng, n - 1)]).astype(np.int64)
                return ids, np.ones(self.seq, np.float32)
            if kind == "repeat":
                return self.repeat_row(rng, n)
            text, spans = self.task_text(kind, rng)
            enc = self.tok.hf.encode(text, add_special_tokens=True)
            full = list(enc.ids) + [self.tok.eos]
            if len(full) > n:
                continue
            starts = np.asarray([o[0] for o in enc.offsets])
            ends = np.asarray([o[1] for o in enc.offsets])
            w = np.ones(self.seq, dtype=np.float32)
            for a, z, wt in spans:
                hit = np.nonzero((ends > a) & (starts < z))[0]
                hit = hit[hit > 0]  # token t is the target of position t - 1
                w[hit - 1] = wt
            tail = self.natural(rng, n - len(full))
            ids = np.concatenate([np.asarray(full, dtype=np.int64), tail.astype(np.int64)])
            return ids, w

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = random.Random(self.seed * 1000 + wid)
        while True:
            self.seq = self.shared_seq.value
            mix = self.early_mix if self.seq <= M.EARLY_MAX_SEQ else self.mix
            kinds, shares = [k for k, _ in mix], [p for _, p in mix]
            rows = [self.row(rng, kinds, shares) for _ in range(self.batch_tokens // self.seq)]
            yield (torch.from_numpy(np.stack([r[0] for r in rows])),
                   torch.from_numpy(np.stack([r[1] for r in rows])))


# ---------------------------------------------------------------------------------------------
# model


def make_model(vocab, tok, args):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, max_position_embeddings=args.seq,
                      rms_norm_eps=1e-5, rope_theta=args.rope_theta, tie_word_embeddings=True,
                      bos_token_id=tok.bos, eos_token_id=tok.eos, pad_token_id=tok.pad,
                      initializer_range=0.02)
    try:
        cfg._attn_implementation = "sdpa"
    except (AttributeError, ValueError):
        pass  # the default is SDPA where available
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(cfg)


def attention_self_check(model, seq=512):
    """Gradients through SDPA (flash, GQA) against eager attention on one random batch, bf16
    autocast both: a wrong attention backward would leave the model unable to learn retrieval.
    Returns the cosine similarity of the k_proj gradients of every layer (worst layer)."""
    import copy
    from transformers import LlamaForCausalLM
    cfg = copy.deepcopy(model.config)  # the twin's attention setting must not leak into the model
    cfg._attn_implementation = "eager"
    twin = LlamaForCausalLM(cfg)
    twin.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, cfg.vocab_size, (2, seq), generator=g).cuda()
    grads = []
    for m in (model, twin):
        m.cuda().train().zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = m(input_ids=x[:, :-1]).logits
        F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).backward()
        grads.append([m.model.layers[i].self_attn.k_proj.weight.grad.float().flatten().clone()
                      for i in range(cfg.num_hidden_layers)])
        m.zero_grad()
    del twin
    return min(float(F.cosine_similarity(a, b, dim=0)) for a, b in zip(*grads))


def load_model(path, dtype):
    from transformers import LlamaForCausalLM
    try:
        return LlamaForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    except TypeError:
        return LlamaForCausalLM.from_pretrained(path, torch_dtype=dtype, attn_implementation="sdpa")


def lr_at(progress, step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    p = min(1.0, progress)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def parse_curriculum(text):
    """"512:0.15,1024:0.3,4096:1" -> [(512, 0.15), (1024, 0.3), (4096, 1.0)]: row length until
    that fraction of the training time."""
    out = []
    for item in text.split(","):
        seq, until = item.split(":")
        out.append((int(seq), float(until)))
    return out


def seq_at(curriculum, progress):
    for seq, until in curriculum:
        if progress < until:
            return seq
    return curriculum[-1][0]


def probe_text(p):
    """A probe result ({task: {correct, total}}) or its failure message, for the log line."""
    return P.probe_line(p) if isinstance(p, dict) else p


def train(model, loader, shared_seq, args, log_rows, probe):
    dev = "cuda"
    model.to(dev).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = torch.compile(model, dynamic=True) if args.compile else model
    curriculum = parse_curriculum(args.curriculum)
    it = iter(loader)
    step, tokens = 0, 0
    t_start = time.time()
    t_last, tok_last, t_probe = t_start, 0, t_start
    zero = lambda: torch.zeros((), device=dev)  # noqa: E731
    acc_n, acc_ok, run_loss, run_nat, run_cnt = zero(), zero(), zero(), zero(), 0
    while True:
        elapsed = time.time() - t_start
        if elapsed >= args.train_seconds or (args.max_steps and step >= args.max_steps):
            break
        progress = elapsed / args.train_seconds
        shared_seq.value = seq_at(curriculum, progress)
        lr = lr_at(progress, step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        ids, w = next(it)
        ids = ids.to(dev, non_blocking=True)
        w = w.to(dev, non_blocking=True)
        x, y = ids[:, :-1], ids[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = fwd(input_ids=x).logits
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                             reduction="none").view_as(w)
        loss = (ce * w).sum() / w.sum()
        loss.backward()
        with torch.no_grad():
            ans = w == ANSWER_WEIGHT
            acc_n += ans.sum()
            acc_ok += ((logits.argmax(-1) == y) & ans).sum()
            nat = w == 1.0
            run_nat += (ce * nat).sum() / nat.sum().clamp(min=1)
            run_loss += loss.detach()
        run_cnt += 1
        tokens += x.numel()
        del logits, ce, loss
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % args.log_every == 0:
            el = time.time() - t_start
            row = {"step": step, "tokens": tokens, "seconds": round(el, 1), "lr": lr,
                   "seq": x.shape[1], "loss": float(run_loss) / run_cnt,
                   "loss_text": float(run_nat) / run_cnt,
                   "answer_token_acc": float(acc_ok) / max(1.0, float(acc_n)),
                   "tok_per_s": tokens / el,
                   "tok_per_s_recent": (tokens - tok_last) / (time.time() - t_last)}
            if time.time() - t_probe >= args.probe_every:
                model.eval()
                try:  # a probe failure must not end the run
                    row["probe"] = probe(model, x.shape[1])
                except Exception as e:
                    row["probe"] = f"failed: {e!r}"[:200]
                model.train()
                t_probe = time.time()
            t_last, tok_last = time.time(), tokens
            log_rows.append(row)
            log(f"step {step:5d} seq {x.shape[1]:4d} tok {tokens / 1e6:7.1f}M "
                f"loss {row['loss']:.3f} text {row['loss_text']:.3f} "
                f"ans-acc {row['answer_token_acc']:.3f} lr {lr:.2e} "
                f"{row['tok_per_s_recent'] / 1e3:.0f}k tok/s"
                + (f" probe {probe_text(row['probe'])}" if "probe" in row else ""))
            acc_n, acc_ok, run_loss, run_nat, run_cnt = zero(), zero(), zero(), zero(), 0
    return step, tokens, time.time() - t_start


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def greedy(model, ids, max_new):
    x = torch.tensor([ids], device="cuda")
    out = model(input_ids=x, use_cache=True)
    past = out.past_key_values
    nxt = out.logits[0, -1].argmax()
    gen = [int(nxt)]
    for _ in range(max_new - 1):
        out = model(input_ids=nxt.view(1, 1), past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[0, -1].argmax()
        gen.append(int(nxt))
    return gen


def eval_grid(model, tok, hay_sentences, hay_keys, lengths, depths, trials, seed, deadline,
              needle_sets=None):
    """Cells cut short by the wall-clock deadline keep the trials they ran. Tasks: passkey, niah,
    and with `needle_sets` ({split: (templates, sentences)}) needles-<split> per split, seeded as
    `kvscope eval needles` seeds them."""
    model.eval()
    count = S.TokenCounter(tok)
    needle_sets = needle_sets or {}
    grid = []
    tasks = [("passkey", None), ("niah", None)] + [("needles", sp) for sp in needle_sets]
    for kind, split in tasks:
        for L in lengths:
            for d in depths:
                ok = done = 0
                for t in range(trials):
                    if time.time() - T0 > deadline:
                        break
                    s = S.trial_seed(seed, kind, L, d, t)
                    if kind == "passkey":
                        b = S.build_passkey(tok, L - EVAL_RESERVE, d, s, count)
                    elif kind == "niah":
                        b = S.build_niah(tok, L - EVAL_RESERVE, d, s, hay_sentences, hay_keys,
                                         1, count)
                    else:
                        templates, sentences = needle_sets[split]
                        b = S.build_needles(tok, L - EVAL_RESERVE, d, s, sentences, templates,
                                            split, 1, 0, count)
                    gen = tok.decode(greedy(model, b["ids"], EVAL_RESERVE))
                    ok += S.answer_found(gen, b["answer"])
                    done += 1
                grid.append({"task": kind if split is None else f"{kind}-{split}", "length": L,
                             "depth": d, "trials": done, "correct": ok,
                             "accuracy": ok / max(1, done)})
    return grid


def write_log(args, summary):
    for folder in filter(None, (args.out, args.pack)):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "train_log.json"), "w") as f:
            json.dump(summary, f, indent=1)


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="folder from build_corpus.py")
    ap.add_argument("--haystacks", default="resources/haystacks")
    ap.add_argument("--templates", default="resources/needles/templates.json",
                    help="needle template set: train split for rows, both splits evaluated")
    ap.add_argument("--out", required=True, help="model folder to write")
    ap.add_argument("--pack", help="also write the model as shards + meta.tar.gz here")
    ap.add_argument("--tokenizer", help="reuse this tokenizer.json instead of training one")
    ap.add_argument("--init", help="continue from this HF model folder")
    ap.add_argument("--train-seconds", type=float, default=505)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--rope-theta", type=float, default=50000.0)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch-tokens", type=int, default=65536, help="tokens per step")
    ap.add_argument("--curriculum", default="512:0.12,1024:0.25,2048:0.45,4096:1",
                    help="row length SEQ until that fraction of the training time, ...")
    ap.add_argument("--probe-every", type=float, default=45,
                    help="seconds between quick retrieval probes in the log")
    ap.add_argument("--probe-trials", type=int, default=2,
                    help="probe prompts per depth (0, 0.5, 1) for each of passkey, niah, "
                         "needles-train and needles-heldout")
    M.add_mix_args(ap)
    ap.add_argument("--cue-dropout", type=float, default=0.0, metavar="P",
                    help="share of needle questions whose framing is replaced by random corpus "
                         "words around the key (needle_rows.dropped_cue; default 0: off)")
    ap.add_argument("--free-natural", action="store_true",
                    help="needles_free rows link key and value with ordinary grammar (is, went "
                         "to, is called ...) and draw half their name values from the training "
                         "texts' names (free_needles.NATURAL_LINKS, proper_nouns)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-lengths", default="512,1024,2048,4096")
    ap.add_argument("--eval-depths", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--eval-trials", type=int, default=10)
    ap.add_argument("--eval-seed", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=585,
                    help="seconds after start at which evaluation stops (results kept)")
    args = ap.parse_args()
    if not 0.0 <= args.cue_dropout < 1.0:
        ap.error(f"--cue-dropout {args.cue_dropout}: a share in [0, 1)")  # usage error, exit 2

    import tokenizers
    import transformers
    from tokenizers import Tokenizer
    log("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers",
        tokenizers.__version__, "gpu", torch.cuda.get_device_name(0))
    torch.backends.cuda.matmul.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)
    train_docs = read_jsonl(os.path.join(args.corpus, "train.jsonl"))
    held_docs = read_jsonl(os.path.join(args.corpus, "heldout.jsonl"))
    tok_path = os.path.join(args.out, "tokenizer.json")
    if args.tokenizer:
        hf = Tokenizer.from_file(args.tokenizer)
        hf.save(tok_path)
    else:
        hf = train_tokenizer(train_docs, args.vocab, tok_path)
    tok = Tok(hf)
    log("tokenizer", hf.get_vocab_size(), "tokens; bos", tok.bos, "eos", tok.eos)

    rnd = random.Random(args.seed)
    rnd.shuffle(train_docs)
    stream = token_stream(tok, train_docs)
    sentences = [s for d in train_docs if d["source"] not in STREAM_ONLY_SOURCES
                 for s in S.split_sentences(d["text"])]  # haystack filler, word keys
    count = S.TokenCounter(tok)
    encs = hf.encode_batch([" " + s for s in sentences], add_special_tokens=False)
    count.cache = {s: len(e.ids) for s, e in zip(sentences, encs)}
    from collections import Counter
    words = Counter(w for s in sentences[::3] for w in s.split(" "))
    word_keys = sorted(w for w, c in words.items()
                       if c >= 3 and w.isalpha() and w.istitle() and 4 <= len(w) <= 10)
    hay_sentences, hay_keys = S.load_haystack_dir(args.haystacks)
    templates = S.load_templates(args.templates)
    # Evaluation haystacks of the needles splits, as the template set names them: train = unseen
    # texts of the training sources, heldout = a source the training never sees.
    needle_sets = {sp: (templates, S.load_haystack_dir(templates["haystacks"][sp])[0])
                   for sp in ("train", "heldout")}
    held_ids = {t["id"] for t in templates["templates"] if t["split"] == "heldout"}
    log(f"templates: {len(templates['templates']) - len(held_ids)} train, {len(held_ids)} "
        f"held-out (never drawn for training)")
    log(f"stream {len(stream) / 1e6:.2f}M tokens, {len(sentences)} sentences, "
        f"{len(word_keys)} word keys, {len(hay_sentences)} haystack sentences")

    mixed = shuffled_sentences(sentences, args.seed)
    count_mixed = S.TokenCounter(tok)
    encs = hf.encode_batch([" " + s for s in mixed], add_special_tokens=False)
    count_mixed.cache = {s: len(e.ids) for s, e in zip(mixed, encs)}
    pools = [(sentences, count), (mixed, count_mixed)]
    import multiprocessing
    curriculum = parse_curriculum(args.curriculum)
    if max(c[0] for c in curriculum) > args.seq:
        sys.exit(f"--curriculum goes beyond --seq {args.seq}")
    shared_seq = multiprocessing.Value("i", curriculum[0][0])
    ds = TaskRows(tok, stream, pools, hay_keys, word_keys, shared_seq, args.batch_tokens,
                  args.seed, templates, M.mixes(args), args.cue_dropout, args.free_natural)
    log("row mix: early", M.mixes(args)[0], "later", M.mixes(args)[1])
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers,
                                         pin_memory=True, prefetch_factor=2,
                                         persistent_workers=True)
    if args.init:
        model = load_model(args.init, torch.float32)
        # A continuation may train longer rows than its start did (e.g. 4096 -> 8192): the
        # saved config must then admit them, or kvscope refuses the longer prompts.
        model.config.max_position_embeddings = max(model.config.max_position_embeddings,
                                                   args.seq)
    else:
        model = make_model(hf.get_vocab_size(), tok, args)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model {nparams / 1e6:.2f}M parameters, attention {model.config._attn_implementation}")
    for backend in ("default", "no-flash", "math"):
        if backend == "no-flash":
            torch.backends.cuda.enable_flash_sdp(False)
        elif backend == "math":
            torch.backends.cuda.enable_mem_efficient_sdp(False)
            torch.backends.cuda.enable_cudnn_sdp(False)
        try:
            cos = attention_self_check(model)
        except Exception as e:  # a hedge, not a requirement: train on with the default backend
            log(f"attention self-check failed to run ({e!r}); training with default SDPA")
            torch.backends.cuda.enable_flash_sdp(True)
            torch.backends.cuda.enable_mem_efficient_sdp(True)
            break
        log(f"attention self-check ({backend} SDPA vs eager): k_proj gradient cosine {cos:.4f}")
        if cos > 0.9:
            break
    else:
        sys.exit("SDPA gradients disagree with eager attention on every backend")
    log_rows = []
    probe_count = S.TokenCounter(tok)

    def probe(m, seq):
        """Retrieval at the current row length (probe.py): passkey, NIAH, needles-train and
        needles-heldout, --probe-trials prompts per depth, counted per task."""
        prompts = P.probe_prompts(tok, seq - EVAL_RESERVE, args.probe_trials, hay_sentences,
                                  hay_keys, templates,
                                  {sp: needle_sets[sp][1] for sp in needle_sets}, probe_count)

        def generate(ids):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return tok.decode(greedy(m, ids, EVAL_RESERVE))
        return P.run_probe(prompts, generate)

    steps, tokens, secs = train(model, loader, shared_seq, args, log_rows, probe)
    del loader, ds  # stops the data workers
    log(f"trained {steps} steps, {tokens / 1e6:.1f}M tokens in {secs:.0f}s")
    probes = [r for r in log_rows if isinstance(r.get("probe"), dict)]
    if probes:
        log(f"last probe (step {probes[-1]['step']}, seq {probes[-1]['seq']}): "
            f"{P.probe_line(probes[-1]['probe'])}")

    model = model.to(torch.bfloat16)
    model.generation_config.bos_token_id = tok.bos
    model.generation_config.eos_token_id = tok.eos
    model.generation_config.pad_token_id = tok.pad
    model.save_pretrained(args.out, safe_serialization=True)
    summary = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "gpu": torch.cuda.get_device_name(0), "args": vars(args), "parameters": nparams,
        "steps": steps, "tokens": tokens, "train_seconds": secs, "log": log_rows,
        # Probe per task at each check (needles-train and needles-heldout apart), and the last.
        "probe": {"depths": list(P.PROBE_DEPTHS), "trials_per_depth": args.probe_trials,
                  "by_step": [{"step": r["step"], "seq": r["seq"], **r["probe"]}
                              for r in probes],
                  "last": probes[-1]["probe"] if probes else None},
    }
    write_log(args, summary)
    if args.pack:
        # 8 files of < 16 MiB come back at most: 15 MB shards (4 for 60 MB), a tar, logs.
        os.makedirs(args.pack, exist_ok=True)
        model.save_pretrained(os.path.join(args.out, "shards"), safe_serialization=True,
                              max_shard_size="15MB")
        with tarfile.open(os.path.join(args.pack, "meta.tar.gz"), "w:gz") as tf:
            for name in ("config.json", "generation_config.json", "tokenizer.json"):
                tf.add(os.path.join(args.out, name), arcname=name)
            idx = os.path.join(args.out, "shards", "model.safetensors.index.json")
            if os.path.exists(idx):
                tf.add(idx, arcname="model.safetensors.index.json")
        for name in sorted(os.listdir(os.path.join(args.out, "shards"))):
            if name.endswith(".safetensors"):
                os.replace(os.path.join(args.out, "shards", name), os.path.join(args.pack, name))
        log("packed into", args.pack)
    del model
    torch.cuda.empty_cache()

    # Evaluate what was saved: bf16 weights upcast to fp32, as KVScope's CPU engine runs them.
    m = load_model(args.out, torch.bfloat16).to(torch.float32).cuda().eval()
    # Held-out prose as in every run; a stream-only source's held-out documents apart from it.
    prose = [d for d in held_docs if d["source"] not in STREAM_ONLY_SOURCES]
    ppl_held, n_held = perplexity(m, tok, token_stream(tok, prose))
    ppl_train, n_train = perplexity(m, tok, stream, max_tokens=200_000)
    log(f"perplexity held-out {ppl_held:.2f} ({n_held} tokens), train sample {ppl_train:.2f}")
    summary["perplexity"] = {"heldout": ppl_held, "heldout_tokens": n_held,
                             "train_sample": ppl_train, "train_sample_tokens": n_train,
                             "window": 1024}
    for src in sorted({d["source"] for d in held_docs} & STREAM_ONLY_SOURCES):
        summary["perplexity"]["heldout_" + src] = perplexity(m, tok, token_stream(
            tok, [d for d in held_docs if d["source"] == src]), max_tokens=200_000)[0]
        log(f"perplexity held-out {src} {summary['perplexity']['heldout_' + src]:.2f}")
    write_log(args, summary)
    if args.eval_trials > 0:
        lengths = [int(x) for x in args.eval_lengths.split(",")]
        depths = [float(x) for x in args.eval_depths.split(",")]
        t_eval = time.time()
        grid = eval_grid(m, tok, hay_sentences, hay_keys, lengths, depths, args.eval_trials,
                         args.eval_seed, args.deadline, needle_sets)
        summary["eval"] = {"seed": args.eval_seed, "reserve": EVAL_RESERVE, "grid": grid,
                           "by_task": grid_summary(grid), "haystacks": args.haystacks,
                           "templates": args.templates,
                           "needle_haystacks": templates["haystacks"],
                           "seconds": time.time() - t_eval}
        write_log(args, summary)
        print_grid(grid, lengths, depths)
        for task, t in summary["eval"]["by_task"].items():
            print(f"{task:16s} {t['correct']}/{t['total']} ({t['accuracy'] * 100:.1f}%)")
    log("done")


if __name__ == "__main__":
    main()
