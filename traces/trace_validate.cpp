// TraceReader::validate: deep consistency checks of a trace, reading every dataset in blocks so
// memory stays bounded whatever the trace size.
#include <algorithm>
#include <cmath>

#include "traces/trace_reader_internal.h"

namespace kvscope::trace {

namespace {
constexpr size_t kMaxProblems = 50;
constexpr hsize_t kStepBlock = 4096;
constexpr hsize_t kRowBlock = hsize_t{1} << 20;

class Problems {
  public:
    void add(std::string p) {
        if (list_.size() < kMaxProblems)
            list_.push_back(std::move(p));
        else
            truncated_ = true;
    }
    std::vector<std::string> take() {
        if (truncated_) list_.push_back("(more problems not listed)");
        return std::move(list_);
    }

  private:
    std::vector<std::string> list_;
    bool truncated_ = false;
};

void check_tokens(const TraceReader::Impl& m, Problems& out) {
    int64_t expected_offset = 0;
    for (hsize_t b = 0; b < static_cast<hsize_t>(m.n_tokens); b += kRowBlock) {
        hsize_t n = std::min<hsize_t>(kRowBlock, static_cast<hsize_t>(m.n_tokens) - b);
        auto roles = m.read<uint8_t>(ds::kTokenRole, {b}, {n});
        auto offsets = m.read<int64_t>(ds::kTokenTextOffset, {b}, {n});
        auto lengths = m.read<int32_t>(ds::kTokenTextLength, {b}, {n});
        for (hsize_t i = 0; i < n; ++i) {
            auto t = static_cast<int64_t>(b + i);
            uint8_t want = t < m.sizes.P ? 0 : 1;
            if (roles[i] != want)
                out.add("/tokens/role[" + std::to_string(t) + "] is " + std::to_string(roles[i]) +
                        ", expected " + std::to_string(want));
            if (offsets[i] != expected_offset || lengths[i] < 0)
                out.add("/tokens/text_offset[" + std::to_string(t) + "] is " +
                        std::to_string(offsets[i]) + ", expected " +
                        std::to_string(expected_offset));
            expected_offset = offsets[i] + std::max(lengths[i], 0);
        }
    }
    if (expected_offset > m.n_text_bytes)
        out.add("token text needs " + std::to_string(expected_offset) +
                " bytes, /tokens/text_bytes holds " + std::to_string(m.n_text_bytes));
}

void check_spans(const TraceReader::Impl& m, Problems& out) {
    const auto found = m.read<int8_t>(ds::kSpanAnswerFound, {0}, {static_cast<hsize_t>(m.sizes.N)});
    for (size_t i = 0; i < m.spans.size(); ++i) {
        const auto& s = m.spans[i];
        if (s.begin < 0 || s.end < s.begin)
            out.add("span " + std::to_string(i) + " [" + std::to_string(s.begin) + ", " +
                    std::to_string(s.end) + ") is invalid");
        if (found[i] < -1 || found[i] > 1)
            out.add("/spans/answer_found[" + std::to_string(i) + "] is " +
                    std::to_string(found[i]));
    }
}

void check_prefill(const TraceReader::Impl& m, Problems& out) {
    auto L = static_cast<hsize_t>(m.sizes.L), H = static_cast<hsize_t>(m.sizes.H);
    auto done = m.read<uint8_t>(ds::kLayerDone, {0}, {L});
    for (hsize_t l = 0; l < L; ++l) {
        if (done[l] > 1) out.add("/prefill/layer_done[" + std::to_string(l) + "] is not 0/1");
        if (done[l] != 1) continue;
        auto sp = m.read<float>(ds::kSpearman, {l, 0}, {1, H});
        for (hsize_t h = 0; h < H; ++h)
            if (!std::isnan(sp[h]) && (sp[h] < -1.0001f || sp[h] > 1.0001f))
                out.add("/prefill/spearman[" + std::to_string(l) + "," + std::to_string(h) +
                        "] = " + std::to_string(sp[h]) + " is outside [-1, 1]");
    }
    // No prefill statistics at all is fine (nothing asked for them); some but not all is not.
    const auto n_done = std::count(done.begin(), done.end(), uint8_t{1});
    if (m.state == RunState::kComplete && n_done > 0 && n_done != static_cast<long>(L))
        out.add("complete trace with prefill statistics of only " + std::to_string(n_done) +
                " of " + std::to_string(L) + " layers");
}

// Steps and the event index; returns nothing, adds problems.
void check_steps_and_events(const TraceReader::Impl& m, Problems& out) {
    const auto L = static_cast<hsize_t>(m.sizes.L), H = static_cast<hsize_t>(m.sizes.H);
    const auto S = static_cast<hsize_t>(m.n_steps);
    int64_t next_event = 0;
    for (hsize_t b = 0; b < S; b += kStepBlock) {
        hsize_t n = std::min<hsize_t>(kStepBlock, S - b);
        auto begin = m.read<int64_t>(ds::kStepEventBegin, {b}, {n});
        auto count = m.read<int64_t>(ds::kStepEventCount, {b}, {n});
        auto ids = m.read<int32_t>(ds::kStepTokenId, {b}, {n});
        auto bytes = m.read<int64_t>(ds::kStepBytesHeld, {b, 0}, {n, L});
        auto lh_b = m.read<int64_t>(ds::kEvLhBegin, {b, 0, 0}, {n, L, H});
        auto lh_c = m.read<int32_t>(ds::kEvLhCount, {b, 0, 0}, {n, L, H});
        hsize_t t0 = static_cast<hsize_t>(m.sizes.P) + b;
        const auto T = static_cast<hsize_t>(m.n_tokens);
        hsize_t tn = t0 < T ? std::min<hsize_t>(n, T - t0) : 0;
        auto tok = m.read<int32_t>(ds::kTokenIds, {t0}, {tn});
        for (hsize_t i = 0; i < n; ++i) {
            std::string at = "step " + std::to_string(b + i) + ": ";
            if (begin[i] != next_event || count[i] < 0)
                out.add(at + "/steps/event_begin is " + std::to_string(begin[i]) + ", expected " +
                        std::to_string(next_event));
            if (i < tn && tok[i] != ids[i])
                out.add(at + "/steps/token_id differs from /tokens/ids");
            for (hsize_t l = 0; l < L; ++l)
                if (bytes[i * L + l] < 0) out.add(at + "negative /steps/bytes_held");
            int64_t sum = 0;
            int64_t row = begin[i];
            for (hsize_t k = 0; k < L * H; ++k) {
                int32_t c = lh_c[i * L * H + k];
                if (c < 0) out.add(at + "negative /events/lh_count");
                if (c > 0 && lh_b[i * L * H + k] != row)
                    out.add(at + "/events/lh_begin does not follow the (layer, head) order");
                row += std::max(c, 0);
                sum += std::max(c, 0);
            }
            if (sum != count[i])
                out.add(at + "/events/lh_count sums to " + std::to_string(sum) +
                        ", /steps/event_count is " + std::to_string(count[i]));
            next_event = begin[i] + std::max<int64_t>(count[i], 0);
        }
    }
}

void check_event_rows(const TraceReader::Impl& m, Problems& out) {
    const auto E = static_cast<hsize_t>(m.n_events);
    int32_t prev_step = 0, prev_layer = -1, prev_head = -1;
    for (hsize_t b = 0; b < E; b += kRowBlock) {
        hsize_t n = std::min<hsize_t>(kRowBlock, E - b);
        auto step = m.read<int32_t>(ds::kEvStep, {b}, {n});
        auto layer = m.read<int16_t>(ds::kEvLayer, {b}, {n});
        auto head = m.read<int16_t>(ds::kEvHead, {b}, {n});
        auto op = m.read<uint8_t>(ds::kEvOp, {b}, {n});
        auto pos = m.read<int32_t>(ds::kEvPosition, {b}, {n});
        // Version 2: only append and merge rows name a slot in destination (trace_schema.h).
        const bool v2 = m.schema_version >= 2;
        auto dest = v2 ? m.read<int32_t>(ds::kEvDestination, {b}, {n}) : std::vector<int32_t>();
        for (hsize_t i = 0; i < n; ++i) {
            std::string at = "/events row " + std::to_string(b + i) + ": ";
            if (layer[i] < 0 || layer[i] >= m.sizes.L || head[i] < 0 || head[i] >= m.sizes.H)
                out.add(at + "(layer " + std::to_string(layer[i]) + ", head " +
                        std::to_string(head[i]) + ") out of range");
            if (op[i] >= kNumCacheOps) out.add(at + "op " + std::to_string(op[i]) + " unknown");
            if (v2 && op[i] < kNumCacheOps && dest[i] != -1 &&
                op[i] != static_cast<uint8_t>(CacheOp::kAppend) &&
                op[i] != static_cast<uint8_t>(CacheOp::kMerge))
                out.add(at + cache_op_name(static_cast<CacheOp>(op[i])) + " with destination " +
                        std::to_string(dest[i]) + " (schema version 2: -1)");
            if (step[i] < prev_step || step[i] >= m.n_steps)
                out.add(at + "step " + std::to_string(step[i]) + " out of order");
            if (pos[i] < 0 || pos[i] >= m.sizes.P + step[i])
                out.add(at + "position " + std::to_string(pos[i]) + " not yet in the context");
            if (step[i] == prev_step &&
                (layer[i] < prev_layer || (layer[i] == prev_layer && head[i] < prev_head)))
                out.add(at + "not sorted by (layer, head) within its step");
            prev_step = step[i];
            prev_layer = layer[i];
            prev_head = head[i];
        }
    }
}

void check_survival(const TraceReader::Impl& m, Problems& out) {
    if (m.sizes.N == 0) return;
    const auto N = static_cast<hsize_t>(m.sizes.N), L = static_cast<hsize_t>(m.sizes.L),
               H = static_cast<hsize_t>(m.sizes.H);
    const hsize_t block = std::max<hsize_t>(1, kRowBlock / (N * L * H));
    for (hsize_t b = 0; b < static_cast<hsize_t>(m.n_steps); b += block) {
        hsize_t n = std::min<hsize_t>(block, static_cast<hsize_t>(m.n_steps) - b);
        auto v = m.read<float>(ds::kStepNeedleSurvival, {b, 0, 0, 0}, {n, N, L, H});
        for (size_t i = 0; i < v.size(); ++i) {
            if (!std::isnan(v[i]) && (v[i] < 0.0f || v[i] > 1.0f)) {
                out.add("/steps/needle_survival of step " + std::to_string(b + i / (N * L * H)) +
                        " is outside [0, 1]");
                break;
            }
        }
    }
}
}  // namespace

std::vector<std::string> TraceReader::validate() const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        Problems out;
        int64_t committed = m.read_scalar<int64_t>(ds::kStepsCommitted);
        if (committed != m.n_steps)
            out.add("/meta/steps_committed is " + std::to_string(committed) + " but only " +
                    std::to_string(m.n_steps) + " step rows exist");
        if (m.state != RunState::kRunning && !m.end)
            out.add("the run ended but /meta/end_json is empty");
        if (m.n_steps > 0 && m.n_tokens != m.sizes.P + m.n_steps)
            out.add("/tokens holds " + std::to_string(m.n_tokens) + " tokens, expected " +
                    std::to_string(m.sizes.P + m.n_steps));
        check_tokens(m, out);
        check_spans(m, out);
        check_prefill(m, out);
        check_steps_and_events(m, out);
        check_event_rows(m, out);
        check_survival(m, out);
        return out.take();
    });
}

}  // namespace kvscope::trace
