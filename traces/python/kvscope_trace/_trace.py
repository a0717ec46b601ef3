"""Trace: read-only access to one ``.kvtrace.h5`` file (traces/SCHEMA.md, schema version 2).

Version 1 files open too and read as version 2 (SCHEMA.md, Versions): ``/events/destination`` is
-1 on their evict, quantize and demote rows, and ``prefill_appends`` comes from the run metadata.

Axis letters in the shapes below are SCHEMA.md's: L layers, H cache heads, P prompt tokens,
S committed steps, T = P + S tokens, N spans, K top-k, E events.

Only committed data is returned: every S-axis read stops at ``/meta/steps_committed`` and every
event read at the last committed step's events, so a trace whose writer is still running or was
killed reads like a shorter finished one (the file is opened in SWMR-read mode).
"""
import json
from collections import OrderedDict, namedtuple

import h5py
import numpy as np

SCHEMA_VERSION = 2  # newest version this reader understands
OLDEST_SCHEMA_VERSION = 1  # oldest version it still opens (adapted as it reads)

# Token cache states: the values of the C++ enum TokenCacheState (traces/trace_reader.h).
ABSENT, HELD, QUANTIZED, DEMOTED, MERGED, EVICTED = range(6)
STATE_NAMES = ("absent", "held", "quantized", "demoted", "merged", "evicted")
# /events/op values (CacheOp in traces/trace_schema.h).
APPEND, EVICT, MERGE, QUANTIZE, DEMOTE = range(5)
OP_NAMES = ("append", "evict", "merge", "quantize", "demote")
# State an op leaves its token in, indexed by op.
_STATE_OF_OP = np.array([HELD, EVICTED, MERGED, QUANTIZED, DEMOTED], dtype=np.uint8)

EVENT_COLUMNS = ("step", "layer", "head", "op", "position", "destination", "weight",
                 "similarity", "threshold", "bits", "slot", "dst_position", "part")

Tokens = namedtuple("Tokens", "ids roles pieces")
Tokens.__doc__ = """Tokens [begin, end): ids int32 [n], roles uint8 [n] (0 prompt, 1 generated),
pieces: list of n bytes objects (a piece may be an incomplete UTF-8 sequence; decode joined
pieces, e.g. with Trace.text)."""


class TraceError(Exception):
    """The file is not a KVScope trace this reader can read (wrong format, newer schema, ...)."""


def _pandas(what):
    try:
        import pandas
    except ImportError as e:  # pandas is optional: only the *_frame helpers need it
        raise ImportError(f"kvscope_trace: {what} returns a pandas DataFrame and needs pandas "
                          "(pip install pandas); the array form needs only numpy") from e
    return pandas


class Trace:
    """One trace file, opened read-only in SWMR mode (safe on running, killed and finished runs).

    Attributes: ``n_layers`` (L), ``n_heads`` (H), ``n_prompt_tokens`` (P), ``top_k`` (K),
    ``n_spans`` (N), ``n_steps`` (S, committed steps), ``n_events`` (E), ``path``, ``file``
    (the h5py.File, for datasets this class does not wrap). Use as a context manager or call
    ``close()``.
    """

    def __init__(self, path):
        self.path = str(path)
        try:
            self.file = h5py.File(self.path, "r", swmr=True)
        except OSError as e:
            raise TraceError(f"{self.path}: cannot open as HDF5 ({e})") from e
        a = self.file.attrs
        fmt = a.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != "kvscope-trace":
            self.file.close()
            raise TraceError(f"{self.path}: not a KVScope trace (format attribute {fmt!r})")
        self.schema_version = int(a["schema_version"])
        if self.schema_version > SCHEMA_VERSION:
            self.file.close()
            raise TraceError(f"{self.path}: schema version {self.schema_version} is newer than "
                             f"this reader ({SCHEMA_VERSION}); update kvscope_trace")
        if self.schema_version < OLDEST_SCHEMA_VERSION:
            self.file.close()
            raise TraceError(f"{self.path}: unsupported schema version {self.schema_version}")
        self.n_layers = int(a["n_layers"])
        self.n_heads = int(a["n_heads"])
        self.n_prompt_tokens = int(a["n_prompt_tokens"])
        self.top_k = int(a["top_k"])
        self.n_spans = int(a["n_spans"])
        # Step 0 appends the prompt itself (1), or the prompt is held before step 0's events (0,
        # `kvscope run`). Version 1 kept it in run_json only.
        if "prefill_appends" in a:
            self.prefill_appends = bool(a["prefill_appends"])
        else:
            self.prefill_appends = self.meta.get("extra", {}).get("prefill_appends_recorded") is True
        self._events_cache = OrderedDict()  # (layer, head) -> (n_steps, columns); a few kept
        self._read_counts()

    # ---- lifetime ------------------------------------------------------------------------
    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_counts(self):
        f = self.file
        self.n_steps = int(f["meta/steps_committed"][()])
        S = self.n_steps
        self.n_events = (int(f["steps/event_begin"][S - 1] + f["steps/event_count"][S - 1])
                         if S else 0)
        self._events_cache.clear()

    def refresh(self):
        """Re-reads a trace that is still being written; returns True when it grew or ended."""
        before = (self.n_steps, self.complete)
        self.file.visititems(lambda name, obj: obj.refresh()
                             if isinstance(obj, h5py.Dataset) else None)
        self._read_counts()
        return (self.n_steps, self.complete) != before

    # ---- metadata ------------------------------------------------------------------------
    @property
    def meta(self):
        """``/meta/run_json`` as a dict (model, policy, policy_params, budget_tokens, ...)."""
        return json.loads(self.file["meta/run_json"].asstr()[()])

    @property
    def end(self):
        """``/meta/end_json`` as a dict (reason, timings in ms), None until the run ended."""
        raw = self.file["meta/end_json"][:]
        return json.loads(bytes(raw).decode("utf-8")) if len(raw) else None

    @property
    def complete(self):
        """``/meta/complete``: 0 running or killed, 1 ended cleanly, 2 ended early."""
        return int(self.file["meta/complete"][()])

    # ---- tokens and spans ----------------------------------------------------------------
    @property
    def n_tokens(self):
        """Readable tokens: P + S (fewer only when the writer was killed inside the prefill)."""
        return min(self.n_prompt_tokens + self.n_steps, self.file["tokens/ids"].shape[0])

    def _token_range(self, begin, end):
        end = self.n_tokens if end is None else end
        if not 0 <= begin <= end <= self.n_tokens:
            raise IndexError(f"tokens [{begin}, {end}) out of range [0, {self.n_tokens})")
        return begin, end

    def tokens(self, begin=0, end=None):
        """Tokens [begin, end) (default all T) as ``Tokens(ids, roles, pieces)``."""
        begin, end = self._token_range(begin, end)
        f = self.file
        ids = f["tokens/ids"][begin:end]
        roles = f["tokens/role"][begin:end]
        off = f["tokens/text_offset"][begin:end]
        ln = f["tokens/text_length"][begin:end]
        if end > begin:
            base = int(off[0])
            raw = bytes(f["tokens/text_bytes"][base:int(off[-1] + ln[-1])])
            pieces = [raw[o - base:o - base + n] for o, n in zip(off.tolist(), ln.tolist())]
        else:
            pieces = []
        return Tokens(ids, roles, pieces)

    def text(self, begin=None, end=None):
        """Decoded text of tokens [begin, end); default: the generated tokens [P, T)."""
        begin = self.n_prompt_tokens if begin is None else begin
        begin = min(begin, self.n_tokens)
        return b"".join(self.tokens(begin, end).pieces).decode("utf-8", "replace")

    def tokens_frame(self, begin=0, end=None):
        """Tokens as a pandas DataFrame (columns position, id, role, piece); needs pandas."""
        pd = _pandas("Trace.tokens_frame")
        begin, end = self._token_range(begin, end)
        t = self.tokens(begin, end)
        return pd.DataFrame({"position": np.arange(begin, end), "id": t.ids, "role": t.roles,
                             "piece": [p.decode("utf-8", "replace") for p in t.pieces]})

    def spans(self):
        """Marked spans: list of dicts begin, end (token indices), label, expected_answer,
        answer_found (1 found in the output, 0 not, -1 unknown)."""
        f, N = self.file, self.n_spans
        if N == 0:
            return []
        cols = (f["spans/begin"][:N], f["spans/end"][:N], f["spans/label"].asstr()[:N],
                f["spans/expected_answer"].asstr()[:N], f["spans/answer_found"][:N])
        return [{"begin": int(b), "end": int(e), "label": lab, "expected_answer": ans,
                 "answer_found": int(fd)} for b, e, lab, ans, fd in zip(*cols)]

    # ---- per-step series -----------------------------------------------------------------
    def _check_step(self, step):
        if not 0 <= step < self.n_steps:
            raise IndexError(f"step {step} out of range [0, {self.n_steps})")

    def budgets(self, step=None):
        """``/steps/budget`` in tokens per cache head, -1 = none: [L, H] after `step`, or
        [S, L, H] when step is None. What it counts is the policy's: D2O reports -1 until its
        first compression at step 1; MiKV reports the high-precision budget."""
        if step is None:
            return self.file["steps/budget"][:self.n_steps]
        self._check_step(step)
        return self.file["steps/budget"][step]

    def bytes_held(self):
        """``/steps/bytes_held``: int64 [S, L], KV bytes held per layer after each step."""
        return self.file["steps/bytes_held"][:self.n_steps]

    def entropy(self):
        """``/steps/entropy``: float32 [S], nats."""
        return self.file["steps/entropy"][:self.n_steps]

    def needle_survival(self, span=0):
        """float32 [S, L, H]: fraction of the span's tokens held after each step, at any
        precision (quantised / demoted tokens count as held; evicted and merged-away count 0).
        `span` is an index or a label (the first span with that label)."""
        if isinstance(span, str):
            labels = [s["label"] for s in self.spans()]
            if span not in labels:
                raise KeyError(f"no span labelled {span!r} (labels: {labels})")
            span = labels.index(span)
        if not 0 <= span < self.n_spans:
            raise IndexError(f"span {span} out of range [0, {self.n_spans})")
        return self.file["steps/needle_survival"][:self.n_steps, span]

    # ---- prefill statistics --------------------------------------------------------------
    def prefill(self, name, layer=None, head=None):
        """``/prefill/<name>`` (key_norm, attn_received, window_scores [L,H,P]; density,
        spearman, norm_attn_area [L,H]; density_layer, window_rows, layer_done [L]; maps
        [L,H,P,P]), optionally indexed by layer (and head). Units as in SCHEMA.md: note that
        density is D2O's unitless min-max-normalised statistic and spearman correlates MINUS the
        key norm with attention (positive = low-norm keys get more attention)."""
        d = self.file["prefill/" + name]
        if layer is None:
            return d[...]
        return d[layer] if head is None else d[layer, head]

    def debiased_attention(self, layer=None, head=None):
        """attn_received divided by the number of prompt queries that can see each key:
        attn_received[..., j] / (P - j). float32 [L, H, P], [H, P] or [P]. The raw column sum
        favours early positions (position j is seen by P - j causal queries); this is the mean
        attention a key received per query that could attend to it."""
        ar = self.prefill("attn_received", layer, head)
        P = self.n_prompt_tokens
        return (ar / (P - np.arange(P, dtype=np.float32))).astype(np.float32)

    # ---- events --------------------------------------------------------------------------
    def events(self, step_begin=0, step_end=None, layer=None, head=None, columns=EVENT_COLUMNS):
        """Events of steps [step_begin, step_end) (default all committed), of one (layer, head)
        when both are given, as a dict column name -> numpy array [n] in recorded order.
        Columns are SCHEMA.md's /events columns: op values 0 append, 1 evict, 2 merge,
        3 quantize, 4 demote (OP_NAMES). Prompt tokens of `kvscope run` traces have no append
        events (they are held from step 0)."""
        step_end = self.n_steps if step_end is None else step_end
        if not 0 <= step_begin <= step_end <= self.n_steps:
            raise IndexError(f"steps [{step_begin}, {step_end}) out of range [0, {self.n_steps}]")
        f = self.file
        if (layer is None) != (head is None):
            raise ValueError("give both layer and head, or neither")
        # Version 1: destination must be adapted, which needs op.
        adapt = self.schema_version < 2 and "destination" in columns
        read = tuple(columns) + (("op",) if adapt and "op" not in columns else ())
        if layer is None:
            if step_end == step_begin:
                b = e = 0
            else:
                b = int(f["steps/event_begin"][step_begin])
                e = int(f["steps/event_begin"][step_end - 1] + f["steps/event_count"][step_end - 1])
            ev = {c: f["events/" + c][b:e] for c in read}
        else:
            if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
                raise IndexError(f"(layer {layer}, head {head}) out of range")
            begin = f["events/lh_begin"][step_begin:step_end, layer, head].astype(np.int64)
            count = f["events/lh_count"][step_begin:step_end, layer, head].astype(np.int64)
            keep = count > 0
            ev = _read_ranges(f, begin[keep], count[keep], read)
        if adapt:
            # Version 1 stored the slot in destination on every row; version 2 keeps it for
            # append and merge only.
            ev["destination"][(ev["op"] != APPEND) & (ev["op"] != MERGE)] = -1
            ev = {c: ev[c] for c in columns}
        return ev

    def events_frame(self, step_begin=0, step_end=None, layer=None, head=None):
        """events() as a pandas DataFrame with an extra ``op_name`` column; needs pandas."""
        pd = _pandas("Trace.events_frame")
        df = pd.DataFrame(self.events(step_begin, step_end, layer, head))
        df["op_name"] = np.array(OP_NAMES, dtype=object)[df["op"].to_numpy()]
        return df

    def _lh_events(self, layer, head):
        """Columns step, op, position, dst_position of one (layer, head) over every committed
        step, plus ``effective`` (bool: the event changes its token, see token_states) and
        ``bits_after`` (int8: the token's precision after it), in recorded order; a few cached."""
        key = (layer, head)
        hit = self._events_cache.get(key)
        if hit is not None and hit[0] == self.n_steps:
            self._events_cache.move_to_end(key)
            return hit[1]
        ev = self.events(0, self.n_steps, layer, head,
                         ("step", "op", "position", "bits", "dst_position"))
        if ev["op"].size and ev["op"].max() >= len(OP_NAMES):
            raise TraceError(f"{self.path}: /events/op holds {ev['op'].max()}, not a cache op")
        ev["effective"], ev["bits_after"] = _effective(ev["op"], ev["position"], ev["bits"],
                                                      self.n_prompt_tokens)
        self._events_cache[key] = (self.n_steps, ev)
        while len(self._events_cache) > 16:
            self._events_cache.popitem(last=False)
        return ev

    def token_states(self, layer, head, step, detail=False):
        """State of positions 0 .. P+step-1 of one (layer, head) cache after `step`.

        Returns uint8 [P + step] of state codes (ABSENT 0, HELD 1, QUANTIZED 2, DEMOTED 3,
        MERGED 4, EVICTED 5 — the C++ TokenCacheState). With detail=True returns a dict:
        state, bits (int8, precision while held, 0 when not held), merged_into (int32, position
        the token was merged into, -1 none), changed_step (int32, step of the last change).

        Rule (SCHEMA.md, Events; as TraceReader::token_states and /summary): every prompt
        position starts held at 16 bits (``kvscope run`` records no prefill appends); then the
        events of steps 0..step apply in recorded order: append -> held (bits, 16 when <= 0),
        merge -> merged; evict -> evicted, quantize -> quantized (bits), demote -> demoted (bits)
        only while the token is held (held, quantized, demoted): on an absent, merged or evicted
        token they change nothing. Events whose position is outside [0, P + step) are ignored.
        """
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise IndexError(f"(layer {layer}, head {head}) out of range")
        self._check_step(step)
        P, n = self.n_prompt_tokens, self.n_prompt_tokens + step
        ev = self._lh_events(layer, head)
        in_range = (ev["step"] <= step) & (ev["position"] >= 0) & (ev["position"] < n)
        sel = np.flatnonzero(in_range & ev["effective"])
        pos = ev["position"][sel].astype(np.int64)
        op = ev["op"][sel]
        state = np.zeros(n, np.uint8)
        bits = np.zeros(n, np.int8)
        changed = np.full(n, -1, np.int32)
        into = np.full(n, -1, np.int32)
        state[:P], bits[:P], changed[:P] = HELD, 16, 0
        # The last effective event of each position decides; reversed unique gives its index.
        last = _last_index(pos, n)
        hit = last >= 0
        li = last[hit]
        state[hit] = _STATE_OF_OP[op[li]]
        bits[hit] = ev["bits_after"][sel][li]
        changed[hit] = ev["step"][sel][li]
        # merged_into keeps the last merge's destination even if the token changes later.
        m = op == MERGE
        mlast = _last_index(pos[m], n)
        mhit = mlast >= 0
        into[mhit] = ev["dst_position"][sel][m][mlast[mhit]]
        if not detail:
            return state
        return {"state": state, "bits": bits, "merged_into": into, "changed_step": changed}

    def prompt_states(self, layer, head):
        """State and bits of the P prompt tokens of (layer, head) after step 0, from the
        record-time ``/summary/prompt_state`` (no replay): ``(state uint8 [P], bits int8 [P])``,
        equal to ``token_states(layer, head, 0, detail=True)``'s first P (bits above 31 read as
        31). None for traces written without it (replay with token_states instead)."""
        if "summary/prompt_state" not in self.file or self.n_steps < 1:
            return None
        code = self.file["summary/prompt_state"][layer, head]
        return (code & 7).astype(np.uint8), (code >> 3).astype(np.int8)

    # ---- attention rows ------------------------------------------------------------------
    def attention_row(self, step, layer, head):
        """(positions int32 [n], values float32 [n]): the step's attention over the cache of
        (layer, head); needs a trace recorded with attention rows."""
        if "attention_rows" not in self.file:
            raise TraceError(f"{self.path}: recorded without attention rows")
        self._check_step(step)
        f = self.file
        b = int(f["attention_rows/begin"][step, layer, head])
        c = int(f["attention_rows/count"][step, layer, head])
        return f["attention_rows/position"][b:b + c], f["attention_rows/value"][b:b + c]


def _effective(op, position, bits, n_prompt):
    """Per event (recorded order of one (layer, head)): whether it changes its token, and the
    token's bits after it. Evict, quantize and demote act on held tokens only; whether a token
    is held depends only on its earlier events, so one pass serves every target step."""
    effective = np.zeros(op.size, bool)
    bits_after = np.zeros(op.size, np.int8)
    held = {}  # position -> bits while held (absent: not held, or a prompt token untouched)
    for i, (o, p, b) in enumerate(zip(op.tolist(), position.tolist(), bits.tolist())):
        cur = held.get(p, 16 if 0 <= p < n_prompt else 0)  # 0: not held
        if o == APPEND:
            cur = b if b > 0 else 16
        elif o == MERGE or o == EVICT:
            if o == EVICT and cur == 0:
                continue
            cur = 0
        elif cur == 0:  # quantize, demote of a token not held
            continue
        elif b > 0:
            cur = b
        held[p] = cur
        effective[i] = True
        bits_after[i] = cur
    return effective, bits_after


def _last_index(pos, n):
    """int64 [n]: index in `pos` of the last occurrence of each value 0..n-1, -1 when absent."""
    last = np.full(n, -1, np.int64)
    if pos.size:
        rev = pos[::-1]
        vals, first_in_rev = np.unique(rev, return_index=True)
        last[vals] = pos.size - 1 - first_in_rev
    return last


def _read_ranges(f, begins, counts, columns):
    """Rows [b, b+c) of each /events column for the given ranges, concatenated in order. One
    covering slice per column when the ranges are dense enough, else one slice per range."""
    total = int(counts.sum())
    if total == 0:
        return {c: np.zeros(0, f["events/" + c].dtype) for c in columns}
    lo, hi = int(begins[0]), int(begins[-1] + counts[-1])
    if hi - lo <= max(8 * total, 1 << 16):
        idx = np.concatenate([np.arange(b - lo, b - lo + c) for b, c in zip(begins, counts)])
        return {c: f["events/" + c][lo:hi][idx] for c in columns}
    return {c: np.concatenate([f["events/" + c][int(b):int(b + n)]
                               for b, n in zip(begins, counts)]) for c in columns}
