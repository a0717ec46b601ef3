"""Read KVScope traces (``.kvtrace.h5``) with h5py + numpy.

The file format is documented in ``traces/SCHEMA.md``; this package follows it and replays token
states exactly as the C++ reader (``TraceReader::token_states``) does. It reads schema version 2
and version 1 files (adapted as it reads; ``kvscope upgrade`` writes a version 2 copy).

>>> from kvscope_trace import Trace, HELD
>>> t = Trace("run.kvtrace.h5")
>>> states = t.token_states(layer=3, head=1, step=t.n_steps - 1)   # uint8 [P + step]
>>> (states == HELD).sum()
"""
from ._trace import (
    ABSENT,
    APPEND,
    DEMOTE,
    DEMOTED,
    EVENT_COLUMNS,
    EVICT,
    EVICTED,
    HELD,
    MERGE,
    MERGED,
    OLDEST_SCHEMA_VERSION,
    OP_NAMES,
    QUANTIZE,
    QUANTIZED,
    SCHEMA_VERSION,
    STATE_NAMES,
    Tokens,
    Trace,
    TraceError,
)

__all__ = [
    "ABSENT", "APPEND", "DEMOTE", "DEMOTED", "EVENT_COLUMNS", "EVICT", "EVICTED", "HELD", "MERGE",
    "MERGED", "OLDEST_SCHEMA_VERSION", "OP_NAMES", "QUANTIZE", "QUANTIZED", "SCHEMA_VERSION",
    "STATE_NAMES", "Tokens", "Trace", "TraceError",
]
__version__ = "0.1.0"
