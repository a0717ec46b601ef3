// The dataset table of the trace schema: the one place a dataset's type, shape, units and meaning
// are written (trace_layout_internal.h says who reads it). SCHEMA.md's dataset rows are
// schema_doc_row() of these entries, checked by trace_schema_doc_test.
#include "traces/trace_layout_internal.h"

#include <stdexcept>

#include "traces/trace_schema.h"

namespace kvscope::trace {

const std::vector<DatasetSpec>& dataset_specs() {
    using A = Axis;
    using D = StoredType;
    static const std::vector<DatasetSpec> specs = {
        // /meta
        {ds::kRunJson,
         D::kString,
         {},
         "JSON",
         "run metadata (model, tokenizer, policy, budget, "
         "prompt, seed, software, device)"},
        {ds::kEndJson,
         D::kUInt8,
         {A::B},
         "UTF-8 JSON",
         "end-of-run record (timings in ms, stop reason); empty until the run ends"},
        {ds::kComplete,
         D::kUInt8,
         {},
         "enum",
         "0 running or killed, 1 ended cleanly, 2 ended early (aborted)"},
        {ds::kStepsCommitted, D::kInt64, {}, "steps", "number of steps fully written (S)"},
        // /tokens
        {ds::kTokenIds, D::kInt32, {A::T}, "token id", "token ids, prompt then generated"},
        {ds::kTokenRole, D::kUInt8, {A::T}, "enum", "0 prompt, 1 generated"},
        {ds::kTokenTextOffset,
         D::kInt64,
         {A::T},
         "bytes",
         "offset of the token's text piece in /tokens/text_bytes"},
        {ds::kTokenTextLength, D::kInt32, {A::T}, "bytes", "length of the token's text piece"},
        {ds::kTokenTextBytes,
         D::kUInt8,
         {A::B},
         "UTF-8",
         "concatenated decoded text pieces of all tokens"},
        // /spans
        {ds::kSpanBegin, D::kInt64, {A::N}, "token index", "first token of the marked span"},
        {ds::kSpanEnd, D::kInt64, {A::N}, "token index", "one past the last token of the span"},
        {ds::kSpanLabel, D::kString, {A::N}, "text", "label of the span (e.g. needle)"},
        {ds::kSpanExpected, D::kString, {A::N}, "text", "expected answer, empty when none"},
        {ds::kSpanAnswerFound,
         D::kInt8,
         {A::N},
         "flag",
         "1 the generated text contains the expected answer, 0 not, -1 unknown"},
        // /prefill
        {ds::kKeyNorm,
         D::kFloat32,
         {A::L, A::H, A::P},
         "L2 norm",
         "L2 norm of the post-RoPE key of each prompt position"},
        {ds::kAttnReceived,
         D::kFloat32,
         {A::L, A::H, A::P},
         "probability mass",
         "attention received at prefill: raw column sums of the softmax attention over all "
         "prompt rows (mean over the group's query heads); position-biased: key j is seen by "
         "P - j queries"},
        {ds::kWindowScores,
         D::kFloat32,
         {A::L, A::H, A::P},
         "probability mass",
         "attention received from the last window_rows prompt rows (observation window)"},
        {ds::kDensity,
         D::kFloat32,
         {A::L, A::H},
         "unitless [0,1)",
         "D2O's density statistic: per query head, the unbiased variance of its column sums "
         "min-max normalised across the layer's query heads; mean over the cache head's group"},
        {ds::kDensityLayer,
         D::kFloat32,
         {A::L},
         "unitless [0,1)",
         "D2O's layer density F_l: mean over all query heads of the layer of the min-max "
         "normalised variance"},
        {ds::kSpearman,
         D::kFloat32,
         {A::L, A::H},
         "correlation [-1,1]",
         "Spearman rank correlation of MINUS key_norm with attn_received: positive = low-norm "
         "keys get more attention"},
        {ds::kNormAttnArea,
         D::kFloat32,
         {A::L, A::H},
         "attention mass x tokens",
         "area between the drop-by-highest-norm and drop-by-lowest-attention loss curves (ALR)"},
        {ds::kWindowRows,
         D::kInt64,
         {A::L},
         "rows",
         "query rows summed in window_scores (observation window), 0 when not recorded"},
        {ds::kLayerDone, D::kUInt8, {A::L}, "flag", "1 once the layer's statistics are written"},
        {ds::kMaps,
         D::kFloat32,
         {A::L, A::H, A::P, A::P},
         "probability",
         "full prefill attention maps [layer, head, query, key]",
         Presence::kWithMaps},
        // /steps
        {ds::kStepTokenId, D::kInt32, {A::S}, "token id", "token sampled at the step"},
        {ds::kStepTopkIds, D::kInt32, {A::S, A::K}, "token id", "top-k token ids, -1 padding"},
        {ds::kStepTopkLogprobs, D::kFloat32, {A::S, A::K}, "nats", "log-probabilities of top-k"},
        {ds::kStepEntropy, D::kFloat32, {A::S}, "nats", "entropy of the next-token distribution"},
        {ds::kStepBytesHeld, D::kInt64, {A::S, A::L}, "bytes", "KV bytes held after the step"},
        {ds::kStepTimeMs, D::kFloat32, {A::S}, "ms", "wall time of the step"},
        {ds::kStepEventBegin, D::kInt64, {A::S}, "row", "first /events row of the step"},
        {ds::kStepEventCount, D::kInt64, {A::S}, "rows", "number of /events rows of the step"},
        {ds::kStepBudget,
         D::kInt32,
         {A::S, A::L, A::H},
         "tokens",
         "budget (target tokens) per cache head after the step, -1 none (yet: D2O at step 0); "
         "MiKV: the high-precision budget"},
        {ds::kStepNeedleSurvival,
         D::kFloat32,
         {A::S, A::N, A::L, A::H},
         "fraction [0,1]",
         "fraction of the span's tokens still held after the step, at any precision "
         "(quantised / demoted count as held)",
         Presence::kWithSpans},
        // /events
        {ds::kEvStep, D::kInt32, {A::E}, "step", "step of the event"},
        {ds::kEvLayer, D::kInt16, {A::E}, "layer", "layer"},
        {ds::kEvHead, D::kInt16, {A::E}, "head", "cache head"},
        {ds::kEvOp, D::kUInt8, {A::E}, "enum", "0 append, 1 evict, 2 merge, 3 quantize, 4 demote"},
        {ds::kEvPosition,
         D::kInt32,
         {A::E},
         "token position",
         "original position of the token the op applies to (merge: the source); identifies "
         "the token"},
        {ds::kEvDestination,
         D::kInt32,
         {A::E},
         "slot",
         "append: the slot written; merge: slot index of the destination after the op; evict, "
         "quantize, demote: -1 (schema version 1 stored their slot)"},
        {ds::kEvWeight, D::kFloat32, {A::E}, "weight", "merge weight, NaN when not applicable"},
        {ds::kEvSimilarity,
         D::kFloat32,
         {A::E},
         "similarity",
         "similarity behind a merge, NaN when not applicable"},
        {ds::kEvThreshold,
         D::kFloat32,
         {A::E},
         "score",
         "score threshold of the decision, NaN when not applicable (D2O merges: compared with "
         "the head-averaged similarity)"},
        {ds::kEvBits, D::kInt8, {A::E}, "bits", "precision of the entry after the op"},
        {ds::kEvSlot,
         D::kInt32,
         {A::E},
         "slot",
         "slot of the entry before the op (append: the new slot), -1 unknown"},
        {ds::kEvDstPosition,
         D::kInt32,
         {A::E},
         "token position",
         "merge: original position of the token held by the destination slot, else -1"},
        {ds::kEvPart,
         D::kUInt8,
         {A::E},
         "enum",
         "tensor the op touches (quantize, demote): 0 keys, 1 values, 2 both"},
        {ds::kEvLhBegin,
         D::kInt64,
         {A::S, A::L, A::H},
         "row",
         "first /events row of (step, layer, head)"},
        {ds::kEvLhCount,
         D::kInt32,
         {A::S, A::L, A::H},
         "rows",
         "number of /events rows of (step, layer, head)"},
        // /attention_rows
        {ds::kRowPosition,
         D::kInt32,
         {A::V},
         "token position",
         "key position of the entry",
         Presence::kWithAttentionRows},
        {ds::kRowValue,
         D::kFloat32,
         {A::V},
         "probability",
         "attention probability",
         Presence::kWithAttentionRows},
        {ds::kRowBegin,
         D::kInt64,
         {A::S, A::L, A::H},
         "entry",
         "first entry of the (step, layer, head) row",
         Presence::kWithAttentionRows},
        {ds::kRowCount,
         D::kInt32,
         {A::S, A::L, A::H},
         "entries",
         "entries of the (step, layer, head) row",
         Presence::kWithAttentionRows},
        // /summary (optional: traces written before it lack it)
        {ds::kSumAppended,
         D::kInt32,
         {A::S, A::L, A::H},
         "tokens",
         "tokens of the (layer, head) cache that ever changed (appended, or merged unseen) by the "
         "end of the step",
         Presence::kOptional},
        {ds::kSumHeld,
         D::kInt32,
         {A::S, A::L, A::H},
         "tokens",
         "tokens held after the step (any precision)",
         Presence::kOptional},
        {ds::kSumHeldBits,
         D::kInt64,
         {A::S, A::L, A::H},
         "bits",
         "sum of the precisions (bits) of the tokens held after the step",
         Presence::kOptional},
        {ds::kSumMerged,
         D::kInt32,
         {A::S, A::L, A::H},
         "merges",
         "merge events applied up to the step",
         Presence::kOptional},
        {ds::kSumEvicted,
         D::kInt32,
         {A::S, A::L, A::H},
         "tokens",
         "tokens evicted up to the step",
         Presence::kOptional},
        {ds::kSumPromptState,
         D::kUInt8,
         {A::L, A::H, A::P},
         "state code",
         "state and precision of each prompt token after step 0: state | bits << 3 (state as in "
         "TokenCacheState, bits while held, 0 otherwise)",
         Presence::kOptional},
    };
    return specs;
}

const DatasetSpec& dataset_spec(const std::string& name) {
    for (const auto& s : dataset_specs())
        if (name == s.name) return s;
    throw std::out_of_range("no dataset spec " + name);
}

hid_t native_hdf5_type(StoredType t) {
    switch (t) {
        case StoredType::kInt8:
            return H5T_NATIVE_INT8;
        case StoredType::kUInt8:
            return H5T_NATIVE_UINT8;
        case StoredType::kInt16:
            return H5T_NATIVE_INT16;
        case StoredType::kInt32:
            return H5T_NATIVE_INT32;
        case StoredType::kInt64:
            return H5T_NATIVE_INT64;
        case StoredType::kFloat32:
            return H5T_NATIVE_FLOAT;
        case StoredType::kString:
            break;
    }
    throw std::invalid_argument("no native type for strings");
}

const char* stored_type_name(StoredType t) {
    switch (t) {
        case StoredType::kInt8:
            return "int8";
        case StoredType::kUInt8:
            return "uint8";
        case StoredType::kInt16:
            return "int16";
        case StoredType::kInt32:
            return "int32";
        case StoredType::kInt64:
            return "int64";
        case StoredType::kFloat32:
            return "float32";
        case StoredType::kString:
            return "str";
    }
    return "?";
}

bool dataset_present(Presence p, const AxisSizes& sizes, bool attention_rows, bool maps) {
    switch (p) {
        case Presence::kAlways:
            return true;
        case Presence::kWithSpans:
            return sizes.N > 0;
        case Presence::kWithAttentionRows:
            return attention_rows;
        case Presence::kWithMaps:
            return maps;
        case Presence::kOptional:
            return true;
    }
    return false;
}

std::string schema_doc_row(const DatasetSpec& spec) {
    std::string meaning;
    for (const char* c = spec.description; *c; ++c) {
        if (*c == '|') meaning += '\\';  // a pipe inside a Markdown table cell
        meaning += *c;
    }
    switch (spec.presence) {
        case Presence::kWithSpans:
            meaning += " (only when `n_spans` > 0)";
            break;
        case Presence::kWithAttentionRows:
            meaning += " (only when `record_attention_rows` = 1)";
            break;
        case Presence::kWithMaps:
            meaning += " (only when `record_maps` = 1)";
            break;
        case Presence::kAlways:
        case Presence::kOptional:
            break;
    }
    return std::string("| `") + spec.name + "` | " + stored_type_name(spec.dtype) + " | " +
           shape_string(spec.shape) + " | " + spec.units + " | " + meaning + " |";
}

bool is_growing(Axis a) {
    return a == Axis::S || a == Axis::T || a == Axis::E || a == Axis::V || a == Axis::B;
}

std::string shape_string(const std::vector<Axis>& shape) {
    if (shape.empty()) return "scalar";
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ",";
        s += static_cast<char>(shape[i]);
    }
    return s + "]";
}

int64_t AxisSizes::fixed(Axis a) const {
    switch (a) {
        case Axis::L:
            return L;
        case Axis::H:
            return H;
        case Axis::P:
            return P;
        case Axis::K:
            return K;
        case Axis::N:
            return N;
        default:
            break;
    }
    throw std::logic_error("axis is not fixed");
}

}  // namespace kvscope::trace
