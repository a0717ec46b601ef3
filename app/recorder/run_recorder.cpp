#include "app/recorder/run_recorder.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <thread>

#include "app/recorder/prefill_summary.h"
#include "core/cache/kv_cache.h"
#include "core/engine/sampler.h"
#include "core/policies/plan.h"
#include "traces/cache_event_record.h"

namespace kvscope::record {

RunRecorder::RunRecorder(Engine& engine, const Tokenizer& tok, trace::TraceWriter& writer,
                         RecorderOptions opt)
    : engine_(engine), tok_(tok), writer_(writer), opt_(opt) {
    observer_id_ = engine_.cache().add_observer([this](const CacheEvent& e) { on_cache_event(e); });
    engine_.on_plan = [this](const Plan& p) { on_plan(p); };
    engine_.on_layer_done = [this](int64_t l) { on_layer(l); };
    if (opt_.record_maps)
        engine_.on_prefill_map = [this](int64_t l, const std::vector<std::vector<float>>& rows) {
            on_prefill_map(l, rows);
        };
    const ModelSpec& sp = engine_.spec();
    budgets_.assign(static_cast<size_t>(sp.n_layers * sp.n_kv_heads), -1);
}

RunRecorder::~RunRecorder() {
    engine_.cache().remove_observer(observer_id_);
    engine_.on_plan = nullptr;
    engine_.on_layer_done = nullptr;
    engine_.on_prefill_map = nullptr;
}

StatsRequest RunRecorder::stats_needed(const RecorderOptions& opt, int64_t prompt_len) {
    StatsRequest r;
    r.colsum = true;
    r.key_norms = true;
    r.window = std::min<int64_t>(opt.window, prompt_len);
    // Maps stream out one layer at a time (on_prefill_map): never all layers' P x P rows at once.
    r.maps = opt.record_maps && prompt_len <= trace::kMaxMapTokens;
    r.step_rows = opt.record_rows;
    return r;
}

void RunRecorder::begin(const trace::RunMetadata& meta, const std::vector<int32_t>& prompt_ids) {
    spans_ = meta.spans;
    writer_.begin(meta);
    std::vector<trace::TokenRecord> toks;
    toks.reserve(prompt_ids.size());
    for (int32_t id : prompt_ids) {
        trace::TokenRecord t;
        t.id = id;
        t.piece = tok_.is_special(id) ? tok_.decode({id}, false) : tok_.token_bytes(id);
        t.role = trace::TokenRole::kPrompt;
        toks.push_back(std::move(t));
    }
    writer_.write_tokens(std::move(toks));
}

void RunRecorder::write_prefill() {
    const ModelSpec& sp = engine_.spec();
    // Layers in parallel (app/recorder/prefill_summary.h), written in order.
    const int threads =
        static_cast<int>(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
    for (trace::PrefillLayerStats& out : summarize_prefill(engine_.prefill_stats(), sp.n_kv_heads,
                                                           sp.group_size(), opt_.window, threads))
        writer_.write_prefill(std::move(out));
}

void RunRecorder::on_prefill_map(int64_t l, const std::vector<std::vector<float>>& rows) {
    if (!writer_.maps_recorded() || rows.empty()) return;
    const ModelSpec& sp = engine_.spec();
    const int64_t G = sp.n_kv_heads, g = sp.group_size();
    const size_t PP = rows[0].size();  // P * P
    // [G, P, P]: the writer thread deflates it while the engine computes the next layer; the
    // writer holds at most TraceWriter::kMaxQueuedMaps of these (back-pressure, bounded memory).
    std::vector<float> maps = writer_.recycled_map_buffer();
    maps.resize(static_cast<size_t>(G) * PP);
    for (int64_t kv = 0; kv < G; ++kv)
        group_mean_into(rows, kv, g, 0, PP, maps.data() + static_cast<size_t>(kv) * PP);
    writer_.write_prefill_map(static_cast<int32_t>(l), std::move(maps));
}

void RunRecorder::on_cache_event(const CacheEvent& e) {
    // The prompt's appends are implied by /tokens (P x L x H rows of no information); every
    // other operation, and every decode-time append, is recorded.
    if (e.op == CacheOp::kAppend && e.step < 0) return;
    pending_.push_back(trace::event_record(e));
}

void RunRecorder::on_plan(const Plan& plan) {
    const int64_t G = engine_.spec().n_kv_heads;
    for (const HeadPlan& hp : plan.heads)
        if (hp.budget >= 0)
            budgets_[static_cast<size_t>(hp.layer * G + hp.kv_head)] =
                static_cast<int32_t>(hp.budget);
}

void RunRecorder::on_layer(int64_t l) {
    if (l < 0 || !opt_.record_rows) return;
    const ModelSpec& sp = engine_.spec();
    const int64_t G = sp.n_kv_heads, g = sp.group_size();
    const auto& rows = engine_.step_rows();
    if (rows.size() <= static_cast<size_t>(l)) return;
    // Every decode step, every layer and cache head (8B shape at 1k: 256 rows of 1k): sized
    // once and written in place, no per-element growth.
    for (int64_t kv = 0; kv < G; ++kv) {
        const auto pos = engine_.cache().positions(l, kv);
        trace::AttentionRow r;
        r.layer = static_cast<int32_t>(l);
        r.head = static_cast<int32_t>(kv);
        r.positions.resize(pos.size());
        std::transform(pos.begin(), pos.end(), r.positions.begin(),
                       [](int64_t p) { return static_cast<int32_t>(p); });
        r.values.resize(pos.size());
        group_mean_into(rows[static_cast<size_t>(l)], kv, g, 0, pos.size(), r.values.data());
        rows_.push_back(std::move(r));
    }
}

namespace {

// How far the writer may run behind the decode loop: at most kMaxStepsBehind steps, and beyond
// two steps at most kMaxBytesBehind of queued step data. Step 0 carries the prompt's compression
// events (1.6 M for the 8B shape's 8k prompt under SnapKV, 3.1 M for the 1B shape's 32k one;
// a few tenths of a second to write): with a limit of two steps the loop stalled on it at step 2
// and recording "cost" +42 % / +158 % of the decode time of 32 steps (bench/RESULTS.md, fifth
// run). The byte bound keeps the memory held bounded (an 8B step at 128k keys carries ~270 MB
// of attention rows); queued steps cost no thread (OrderedTasks has one worker).
constexpr size_t kMaxStepsBehind = 64;
constexpr size_t kMaxBytesBehind = size_t{1} << 30;

size_t step_bytes(const trace::StepData& d, size_t logits) {
    size_t b = d.events.size() * sizeof(trace::EventRecord) + logits * sizeof(float);
    for (const auto& r : d.attention)
        b += r.positions.size() * sizeof(int32_t) + r.values.size() * sizeof(float);
    return b;
}

}  // namespace

void RunRecorder::commit_step(int32_t token, const std::vector<float>& logits, float time_ms) {
    const ModelSpec& sp = engine_.spec();
    const KVCache& cache = engine_.cache();
    trace::StepData d;
    d.record.step = step_;
    d.record.token_id = token;
    d.record.piece = tok_.is_special(token) ? tok_.decode({token}, false) : tok_.token_bytes(token);
    d.record.time_ms = time_ms;
    for (int64_t l = 0; l < sp.n_layers; ++l) {
        int64_t b = 0;
        for (int64_t kv = 0; kv < sp.n_kv_heads; ++kv) b += cache.bytes_held(l, kv);
        d.record.bytes_held.push_back(b);
    }
    d.events = std::move(pending_);
    pending_.clear();
    d.budgets = budgets_;
    if (!spans_.empty()) {
        for (const auto& span : spans_)
            for (int64_t l = 0; l < sp.n_layers; ++l)
                for (int64_t kv = 0; kv < sp.n_kv_heads; ++kv) {
                    const auto pos = cache.positions(l, kv);
                    int64_t held = 0;
                    for (int64_t p = span.begin; p < span.end; ++p)
                        held += std::binary_search(pos.begin(), pos.end(), p) ? 1 : 0;
                    d.needle_survival.push_back(
                        static_cast<float>(held) /
                        static_cast<float>(std::max<int64_t>(1, span.end - span.begin)));
                }
    }
    d.attention = std::move(rows_);
    rows_.clear();
    const size_t bytes = step_bytes(d, logits.size());
    // Finished steps leave the queue (a failure surfaces here); unfinished ones are waited for
    // only while the queue is over its limits.
    while (!behind_.empty() &&
           (steps_.finished(behind_.front().first) || behind_.size() >= kMaxStepsBehind ||
            (behind_.size() >= 2 && behind_bytes_ + bytes > kMaxBytesBehind))) {
        steps_.wait(behind_.front().first);  // rethrows a failure
        behind_bytes_ -= behind_.front().second;
        behind_.pop_front();
    }
    const int64_t index =
        steps_.start([this, d = std::move(d), lg = logits, k = opt_.top_k]() mutable {
            const auto lp = log_softmax(lg.data(), static_cast<int64_t>(lg.size()));
            for (const auto& [id, v] : top_k(lp, k)) {
                d.record.topk_ids.push_back(id);
                d.record.topk_logprobs.push_back(v);
            }
            d.record.entropy = entropy_nats(lp);
            writer_.write_step(std::move(d));
        });
    behind_.emplace_back(index, bytes);
    behind_bytes_ += bytes;
    generated_ids_.push_back(token);
    ++step_;
}

void RunRecorder::end(const trace::RunEnd& e) {
    std::exception_ptr failed;  // a queued step's; the trace is still ended (and closed)
    try {
        steps_.wait_all();
    } catch (...) {
        failed = std::current_exception();
    }
    behind_.clear();
    behind_bytes_ = 0;
    generated_ = tok_.decode(generated_ids_, true);
    writer_.end(e);
    if (failed) std::rethrow_exception(failed);
}

}  // namespace kvscope::record
