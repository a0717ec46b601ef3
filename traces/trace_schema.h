#pragma once
// STATUS: stable (additions only from here on)
// KVScope trace format, schema version 2: the record types the writer takes and the reader
// returns, and the name of every HDF5 dataset. Each dataset's type, shape, units and meaning are
// written once, in the dataset table (traces/trace_layout.cpp); traces/SCHEMA.md shows that table
// to users of h5py / pandas (a test keeps the two equal).
//
// Axes used in the shapes below:
//   L = n_layers        (model layers)
//   H = n_heads         (cache heads per layer: KV heads, or query heads when the policy keeps a
//                        cache per query head; attention statistics are aggregated to these heads
//                        by the policy's GQA aggregation, recorded in the run metadata)
//   P = n_prompt_tokens (tokens of the prompt; positions 0..P-1)
//   T = tokens recorded = P + S (each step appends the token it generated)
//   S = steps committed. Step 0 is the prefill forward (it ends with compression of the prompt
//       cache and samples generated token 0); step s >= 1 feeds generated token s-1 at position
//       P+s-1 and samples generated token s. Events of the prefill compression carry step 0.
//   K = top_k           (logprobs kept per step)
//   N = n_spans         (marked spans, e.g. needles)
//   E = events recorded; V = attention-row entries recorded; B = bytes of text
//
// Growing datasets are chunked, deflate-compressed and extendible along their first axis.
// Float "not recorded" values are NaN; integer ones are -1.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvscope::trace {

// Version 2 (issue 14) changed the meaning of two things version 1 left to the reader:
//   /events/destination is -1 on evict, quantize and demote rows (version 1: the entry's slot,
//   a copy of /events/slot), and the root attribute prefill_appends says whether step 0 appends
//   the prompt (version 1: run_json extra.prefill_appends_recorded, when present).
// Version 1 files still open: TraceReader adapts them as it reads (destination -1 on those rows),
// and upgrade_trace (traces/trace_upgrade.h, `kvscope upgrade`) writes a version 2 copy.
inline constexpr int kSchemaVersion = 2;
inline constexpr int kOldestSchemaVersion = 1;  // oldest version readers still open
inline constexpr const char* kFormatName = "kvscope-trace";
inline constexpr const char* kFileSuffix = ".kvtrace.h5";
// Full prefill attention maps are recorded only for prompts up to this many tokens.
inline constexpr int64_t kMaxMapTokens = 2048;

// ---- Root attributes (written once, before the run starts) ----------------------------------
// format              str    "kvscope-trace"
// schema_version      int32  kSchemaVersion
// software_version    str    kvscope version that wrote the file
// created_utc         str    ISO 8601, e.g. "2025-01-31T12:00:00Z"
// n_layers            int32  L
// n_heads             int32  H
// n_prompt_tokens     int64  P
// top_k               int32  K
// n_spans             int32  N
// record_attention_rows uint8 1 when /attention_rows exists
// record_maps         uint8  1 when /prefill/maps exists
// prefill_appends     uint8  0: step 0 has no append events for the prompt, every prompt position
//                            is held at 16 bits in every cache before step 0's events (`kvscope
//                            run`); 1: step 0 appends the prompt itself (version 2; version 1
//                            files: run_json extra.prefill_appends_recorded, absent = 0)

// Dataset names, grouped as in the file. Type, shape, units, meaning: trace_layout.cpp.
namespace ds {
// ---- /meta -----------------------------------------------------------------------------------
inline constexpr const char* kRunJson = "/meta/run_json";
inline constexpr const char* kEndJson = "/meta/end_json";
inline constexpr const char* kComplete = "/meta/complete";
inline constexpr const char* kStepsCommitted = "/meta/steps_committed";

// ---- /tokens: one row per token, prompt first, then one per step ----------------------------
inline constexpr const char* kTokenIds = "/tokens/ids";
inline constexpr const char* kTokenRole = "/tokens/role";
inline constexpr const char* kTokenTextOffset = "/tokens/text_offset";
inline constexpr const char* kTokenTextLength = "/tokens/text_length";
inline constexpr const char* kTokenTextBytes = "/tokens/text_bytes";

// ---- /spans: marked spans (needles), fixed at begin ------------------------------------------
inline constexpr const char* kSpanBegin = "/spans/begin";
inline constexpr const char* kSpanEnd = "/spans/end";
inline constexpr const char* kSpanLabel = "/spans/label";
inline constexpr const char* kSpanExpected = "/spans/expected_answer";
inline constexpr const char* kSpanAnswerFound = "/spans/answer_found";

// ---- /prefill: statistics of the prompt forward, per layer ----------------------------------
inline constexpr const char* kKeyNorm = "/prefill/key_norm";
inline constexpr const char* kAttnReceived = "/prefill/attn_received";
inline constexpr const char* kWindowScores = "/prefill/window_scores";
inline constexpr const char* kDensity = "/prefill/density";
inline constexpr const char* kDensityLayer = "/prefill/density_layer";
inline constexpr const char* kSpearman = "/prefill/spearman";
inline constexpr const char* kNormAttnArea = "/prefill/norm_attn_area";
inline constexpr const char* kWindowRows = "/prefill/window_rows";
inline constexpr const char* kLayerDone = "/prefill/layer_done";
inline constexpr const char* kMaps = "/prefill/maps";

// ---- /steps: one row per step ----------------------------------------------------------------
inline constexpr const char* kStepTokenId = "/steps/token_id";
inline constexpr const char* kStepTopkIds = "/steps/topk_ids";
inline constexpr const char* kStepTopkLogprobs = "/steps/topk_logprobs";
inline constexpr const char* kStepEntropy = "/steps/entropy";
inline constexpr const char* kStepBytesHeld = "/steps/bytes_held";
inline constexpr const char* kStepTimeMs = "/steps/time_ms";
inline constexpr const char* kStepEventBegin = "/steps/event_begin";
inline constexpr const char* kStepEventCount = "/steps/event_count";
inline constexpr const char* kStepBudget = "/steps/budget";
inline constexpr const char* kStepNeedleSurvival = "/steps/needle_survival";

// ---- /events: one row per cache operation; step-major, (layer, head)-sorted within a step ---
inline constexpr const char* kEvStep = "/events/step";
inline constexpr const char* kEvLayer = "/events/layer";
inline constexpr const char* kEvHead = "/events/head";
inline constexpr const char* kEvOp = "/events/op";
inline constexpr const char* kEvPosition = "/events/position";
inline constexpr const char* kEvDestination = "/events/destination";
inline constexpr const char* kEvWeight = "/events/weight";
inline constexpr const char* kEvSimilarity = "/events/similarity";
inline constexpr const char* kEvThreshold = "/events/threshold";
inline constexpr const char* kEvBits = "/events/bits";
inline constexpr const char* kEvSlot = "/events/slot";
inline constexpr const char* kEvDstPosition = "/events/dst_position";
inline constexpr const char* kEvPart = "/events/part";
inline constexpr const char* kEvLhBegin = "/events/lh_begin";
inline constexpr const char* kEvLhCount = "/events/lh_count";

// ---- /attention_rows: decode attention rows, sparse over positions (record_attention_rows) --
inline constexpr const char* kRowPosition = "/attention_rows/position";
inline constexpr const char* kRowValue = "/attention_rows/value";
inline constexpr const char* kRowBegin = "/attention_rows/begin";
inline constexpr const char* kRowCount = "/attention_rows/count";

// ---- /summary: per-head counts after each step (optional: writers since issue 18) ----------
// The counts the views rebuild from /events (traces/head_counts.h), so an overview of every
// (layer, head) reads [L,H] numbers per step instead of every event. Readers use them when
// present and replay events otherwise.
inline constexpr const char* kSumAppended = "/summary/appended";
inline constexpr const char* kSumHeld = "/summary/held";
inline constexpr const char* kSumHeldBits = "/summary/held_bits";
inline constexpr const char* kSumMerged = "/summary/merged";
inline constexpr const char* kSumEvicted = "/summary/evicted";
// State code (token_state_code.h) of every prompt token after step 0, so a view of every token's
// precision reads one row per (layer, head) instead of replaying the prefill's events.
inline constexpr const char* kSumPromptState = "/summary/prompt_state";
}  // namespace ds

// ---- Enumerations stored as integers ---------------------------------------------------------
enum class TokenRole : uint8_t { kPrompt = 0, kGenerated = 1 };

// Mirrors the cache's event ops (core/cache/cache_event.h); the stored value is the enum value.
enum class CacheOp : uint8_t { kAppend = 0, kEvict = 1, kMerge = 2, kQuantize = 3, kDemote = 4 };
inline constexpr int kNumCacheOps = 5;
const char* cache_op_name(CacheOp op);  // "append", "evict", "merge", "quantize", "demote"

// /meta/complete
enum class RunState : uint8_t {
    kRunning = 0,   // still being written, or the writer was killed
    kComplete = 1,  // ended cleanly
    kAborted = 2,   // ended through end() with complete = false (error, user stop)
};

// ---- Records ---------------------------------------------------------------------------------
struct MarkedSpan {
    int64_t begin = 0;            // first token index
    int64_t end = 0;              // one past the last token index
    std::string label;            // e.g. "needle"
    std::string expected_answer;  // "" = none; the writer checks the generated text for it
};

// Everything known before the run starts. Stored as JSON in /meta/run_json (keys = field names)
// plus the typed root attributes listed above.
struct RunMetadata {
    // Trace axes.
    int32_t n_layers = 0;
    int32_t n_heads = 0;  // cache heads per layer (see H above)
    int64_t n_prompt_tokens = 0;
    int32_t top_k = 0;
    std::vector<MarkedSpan> spans;

    // Model: name and path plus the parsed config (ModelSpec fields or config.json).
    std::string model_name;
    std::string model_path;
    std::string architecture;
    std::string model_dtype;
    int32_t n_query_heads = 0;
    int32_t n_kv_heads = 0;
    int32_t head_dim = 0;
    nlohmann::json model_spec = nlohmann::json::object();

    std::string tokenizer;  // kind and path, e.g. "tokenizer.json (byte-level BPE)"
    std::string policy;     // policy name, "full" for none
    nlohmann::json policy_params = nlohmann::json::object();  // every parameter, with defaults
    std::string gqa_aggregation;  // "mean" | "max" | "per_query_head" | ...
    // Normalised budget: tokens per cache head including sinks and window, or a ratio.
    int64_t budget_tokens = -1;
    double budget_ratio = -1.0;
    int64_t window = 0;
    int64_t sinks = 0;

    std::string prompt;  // prompt text (UTF-8)
    uint64_t seed = 0;
    nlohmann::json sampling = nlohmann::json::object();  // temperature, top_p, max_new_tokens
    std::string software_version;                        // filled by the writer when empty
    std::string device;                                  // GPU or CPU name
    std::string backend;                                 // "cpu" | "cuda"
    std::string created_utc;                             // filled by the writer when empty
    nlohmann::json extra = nlohmann::json::object();     // anything else worth keeping
};

// Written by end(): timings and outcome. Stored as JSON in /meta/end_json.
struct RunEnd {
    bool complete = true;
    std::string reason;  // why the run stopped ("eos", "max_new_tokens", an error)
    double load_ms = 0.0;
    double prefill_ms = 0.0;
    double decode_ms = 0.0;
    nlohmann::json extra = nlohmann::json::object();
};

struct TokenRecord {
    int32_t id = 0;
    std::string piece;  // decoded text of this token alone (UTF-8 bytes, may be partial)
    TokenRole role = TokenRole::kPrompt;
    int64_t text_offset = 0;  // filled by the writer / reader: offset into the joined text
};

// One cache operation on one (layer, head). Fields as in the cache's CacheEvent.
struct EventRecord {
    int32_t step = 0;
    int32_t layer = 0;
    int32_t head = 0;
    CacheOp op = CacheOp::kAppend;
    int32_t position = 0;       // original token position the op applies to (merge: the source)
    int32_t destination = -1;   // append: slot written; merge: slot merged into; else -1
    float weight = 0.0f;        // merge weight of the source (NaN when not applicable)
    float similarity = 0.0f;    // similarity that triggered a merge (NaN when not applicable)
    float threshold = 0.0f;     // score threshold of the decision (NaN when not applicable)
    int8_t bits = 16;           // precision of the entry after the op
    int32_t slot = -1;          // slot before the op (append: the new slot); -1 unknown
    int32_t dst_position = -1;  // merge: token position held by the destination slot
    uint8_t part = 2;           // quantize / demote: 0 keys, 1 values, 2 both
};

// Prefill statistics of one layer. Vectors left empty are recorded as NaN.
struct PrefillLayerStats {
    int32_t layer = 0;
    std::vector<float> key_norm;       // [H*P] row-major (head, position)
    std::vector<float> attn_received;  // [H*P]
    std::vector<float> window_scores;  // [H*P]
    int64_t window_rows = 0;           // rows summed in window_scores
    std::vector<float> density;        // [H]
    float density_layer = 0.0f;
    std::vector<float> spearman;        // [H]
    std::vector<float> norm_attn_area;  // [H]
};

// Per-step scalars and vectors (the /steps row).
struct StepRecord {
    int64_t step = 0;
    int32_t token_id = 0;
    std::string piece;                 // decoded text of token_id
    std::vector<int32_t> topk_ids;     // up to K, most probable first
    std::vector<float> topk_logprobs;  // same length as topk_ids
    float entropy = 0.0f;              // nats, of the full next-token distribution
    std::vector<int64_t> bytes_held;   // [L]
    float time_ms = 0.0f;
    int64_t event_begin = 0;  // filled by the writer / reader
    int64_t event_count = 0;
};

// One attention row of a decode step for one (layer, head), sparse over positions.
struct AttentionRow {
    int32_t layer = 0;
    int32_t head = 0;
    std::vector<int32_t> positions;
    std::vector<float> values;  // same length as positions
};

// Everything recorded for one step. The writer stamps events with record.step and sorts them by
// (layer, head), keeping the given order within a (layer, head).
struct StepData {
    StepRecord record;
    std::vector<EventRecord> events;
    std::vector<int32_t> budgets;         // [L*H] or empty (-1)
    std::vector<float> needle_survival;   // [N*L*H] or empty (NaN)
    std::vector<AttentionRow> attention;  // only kept with Options::record_attention_rows
};

// Whether step 0 appends the prompt itself: run_json extra.prefill_appends_recorded (`kvscope
// run` sets false; absent = false). The writer stores it as the root attribute prefill_appends.
bool prefill_appends_recorded(const RunMetadata& m);

// JSON forms used in /meta/run_json and /meta/end_json.
nlohmann::json to_json(const RunMetadata& m);
RunMetadata run_metadata_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception
nlohmann::json to_json(const RunEnd& e);
RunEnd run_end_from_json(const nlohmann::json& j);

}  // namespace kvscope::trace
