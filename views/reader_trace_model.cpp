#include "views/reader_trace_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace kvscope::views {

namespace {

std::string compact_params(const nlohmann::json& params) {
    if (!params.is_object()) return {};
    std::string out;
    for (const auto& [key, value] : params.items()) {
        if (!out.empty()) out += ", ";
        out += key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
    }
    return out;
}

const float kNaN = std::nanf("");

}  // namespace

template <typename F, typename T>
T ReaderTraceModel::guarded(F&& read, T fallback) const {
    try {
        return read();
    } catch (const std::exception& e) {
        if (error_.empty()) error_ = e.what();
        return fallback;
    }
}

std::string ReaderTraceModel::take_error() {
    std::string e;
    e.swap(error_);
    return e;
}

ReaderTraceModel::ReaderTraceModel(const std::filesystem::path& path, size_t history_cache_bytes)
    : reader_(path), history_cache_bytes_(history_cache_bytes) {
    fill_summary();
    load_tables();
}

void ReaderTraceModel::fill_summary() {
    const trace::TraceInfo info = reader_.info();
    const trace::RunMetadata& meta = reader_.metadata();
    summary_.path = reader_.path().string();
    summary_.model_name = meta.model_name;
    summary_.architecture = meta.architecture;
    summary_.policy = meta.policy.empty() ? "full" : meta.policy;
    summary_.policy_params = compact_params(meta.policy_params);
    summary_.gqa_aggregation = meta.gqa_aggregation;
    summary_.notice = info.notice;
    summary_.state = info.state;
    summary_.live = info.swmr;
    summary_.n_layers = info.n_layers;
    summary_.n_heads = info.n_heads;
    summary_.head_dim = meta.head_dim;
    summary_.n_prompt_tokens = info.n_prompt_tokens;
    summary_.n_tokens = info.n_tokens;
    summary_.n_steps = info.n_steps;
    summary_.budget_tokens = meta.budget_tokens;
    summary_.budget_ratio = meta.budget_ratio;
}

void ReaderTraceModel::load_tables() {
    using F = std::vector<float>;
    spearman_ = guarded([&] { return reader_.spearman(); }, F{});
    density_ = guarded([&] { return reader_.density(); }, F{});
    density_layer_ = guarded([&] { return reader_.density_layer(); }, F{});
    const int64_t have = std::ssize(bytes_held_) / std::max(summary_.n_layers, 1);
    if (have < summary_.n_steps) {
        const std::vector<int64_t> more = guarded(
            [&] { return reader_.bytes_held(have, summary_.n_steps); }, std::vector<int64_t>{});
        bytes_held_.insert(bytes_held_.end(), more.begin(), more.end());
    }
    if (!reader_.spans().empty()) {
        answer_found_ = guarded([&] { return reader_.answer_found(); }, std::vector<int8_t>{});
    }
    budget_rows_.resize(static_cast<size_t>(summary_.n_steps));
    has_budgets_ = -1;
}

// ---- Tokens ---------------------------------------------------------------------------------

const trace::TokenRecord* ReaderTraceModel::token_record(int64_t token) const {
    if (token < 0 || token >= summary_.n_tokens) return nullptr;
    const int64_t page = token / kTokenPage;
    auto it = token_pages_.find(page);
    if (it == token_pages_.end()) {
        const int64_t begin = page * kTokenPage;
        const int64_t end = std::min(begin + kTokenPage, summary_.n_tokens);
        it = token_pages_
                 .emplace(page, TokenPage{guarded([&] { return reader_.tokens(begin, end); },
                                                  std::vector<trace::TokenRecord>{})})
                 .first;
    }
    const size_t i = static_cast<size_t>(token - page * kTokenPage);
    return i < it->second.tokens.size() ? &it->second.tokens[i] : nullptr;
}

std::string_view ReaderTraceModel::token_text(int64_t token) const {
    const trace::TokenRecord* r = token_record(token);
    return r ? std::string_view(r->piece) : std::string_view();
}

trace::TokenRole ReaderTraceModel::token_role(int64_t token) const {
    const trace::TokenRecord* r = token_record(token);
    return r ? r->role : trace::TokenRole::kPrompt;
}

int32_t ReaderTraceModel::token_id(int64_t token) const {
    const trace::TokenRecord* r = token_record(token);
    return r ? r->id : -1;
}

StepInfo ReaderTraceModel::step_info(int64_t step) const {
    if (step < 0 || step >= summary_.n_steps) return {};
    auto it = step_infos_.find(step);
    if (it == step_infos_.end()) {
        const trace::StepRecord r =
            guarded([&] { return reader_.step(step); }, trace::StepRecord{});
        StepInfo info;
        info.step = step;
        info.token_id = r.token_id;
        info.piece = r.piece;
        info.entropy = r.entropy;
        info.topk_ids = r.topk_ids;
        info.topk_logprobs = r.topk_logprobs;
        if (step_infos_.size() > 256) step_infos_.clear();
        it = step_infos_.emplace(step, std::move(info)).first;
    }
    return it->second;
}

// ---- Histories ------------------------------------------------------------------------------

std::shared_ptr<HeadHistory> ReaderTraceModel::build_history(int32_t layer, int32_t head) const {
    auto h = std::make_shared<HeadHistory>(layer, head);
    extend_history(*h);
    h->shrink_to_fit();  // cached histories are the Studio's largest memory
    return h;
}

void ReaderTraceModel::extend_history(HeadHistory& h) const {
    const int64_t from = h.steps();
    const int64_t to = summary_.n_steps;
    if (from >= to) return;
    const std::vector<trace::EventRecord> events =
        guarded([&] { return reader_.events(h.layer(), h.head(), from, to); },
                std::vector<trace::EventRecord>{});
    // One allocation for every change to come (events, plus the prompt at step 0).
    h.reserve_changes(
        events.size() +
        static_cast<size_t>(from == 0 ? std::max<int64_t>(summary_.n_prompt_tokens, 0) : 0));
    // Events come step-major; hand each step's slice to the history (empty steps included).
    size_t i = 0;
    for (int64_t s = from; s < to; ++s) {
        size_t j = i;
        while (j < events.size() && events[j].step == s) ++j;
        if (s == 0) {
            // `kvscope run` does not record the prefill's appends (SCHEMA.md: the prompt is in the
            // cache when step 0's compression runs). Put the prompt in first, at full precision,
            // for every position whose append the trace does not carry itself.
            h.apply_step(std::span<const trace::EventRecord>(events.data() + i, j - i),
                         summary_.n_prompt_tokens);
        } else {
            h.apply_step(std::span<const trace::EventRecord>(events.data() + i, j - i));
        }
        i = j;
    }
}

void ReaderTraceModel::insert_history(int64_t key, std::shared_ptr<HeadHistory> h) const {
    lru_.push_front(key);
    const size_t bytes = h->memory_bytes();
    last_history_bytes_ = bytes;
    histories_[key] = CachedHistory{std::move(h), lru_.begin(), bytes, frame_};
    history_bytes_ += bytes;
    // Keep at least the newest entry whatever its size.
    while (history_bytes_ > history_cache_bytes_ && lru_.size() > 1) {
        const int64_t victim = lru_.back();
        lru_.pop_back();
        auto it = histories_.find(victim);
        history_bytes_ -= it->second.bytes;
        histories_.erase(it);
    }
}

std::shared_ptr<const HeadHistory> ReaderTraceModel::history(int32_t layer, int32_t head,
                                                             Load load) const {
    if (!valid_lh(layer, head)) return nullptr;
    const int64_t key = lh_key(layer, head);
    auto it = histories_.find(key);
    if (it != histories_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.lru);
        it->second.used_frame = frame_;
        return it->second.history;
    }
    if (load == Load::kLater) {
        if (!deferred_.count(key)) queued_.insert(key);
        return nullptr;
    }
    deferred_.erase(key);
    queued_.erase(key);
    std::shared_ptr<HeadHistory> h = build_history(layer, head);
    insert_history(key, h);
    return h;
}

bool ReaderTraceModel::load_pending(double budget_ms) {
    const auto start = std::chrono::steady_clock::now();
    auto over_budget = [&] {
        const std::chrono::duration<double, std::milli> spent =
            std::chrono::steady_clock::now() - start;
        return spent.count() >= budget_ms;
    };
    ++frame_;
    if (!deferred_.empty() && room_for_history()) deferred_.clear();  // asked for again if shown
    // Token states first (one row read each), then histories, then counts-only loads.
    while (!states_queued_.empty()) {
        const int64_t key = *states_queued_.begin();
        states_queued_.erase(states_queued_.begin());
        if (!states_.count(key) && has_head_states()) {
            auto h = build_states(static_cast<int32_t>(key / summary_.n_heads),
                                  static_cast<int32_t>(key % summary_.n_heads));
            if (h) insert_states(key, std::move(h));
        }
        if (over_budget()) return has_pending();
    }
    // Histories first (a view waits on them), then counts-only loads.
    while (!queued_.empty()) {
        const int64_t key = *queued_.begin();
        if (!histories_.count(key) && !room_for_history()) {
            // Every cached history was shown in the last frame: loading more would evict what
            // the same frame needs again (a load / evict cycle that never completes).
            deferred_.insert(queued_.begin(), queued_.end());
            queued_.clear();
            break;
        }
        queued_.erase(queued_.begin());
        if (!histories_.count(key)) {
            const int32_t layer = static_cast<int32_t>(key / summary_.n_heads);
            const int32_t head = static_cast<int32_t>(key % summary_.n_heads);
            insert_history(key, build_history(layer, head));
        }
        if (over_budget()) return has_pending();
    }
    while (!count_queued_.empty()) {
        const int64_t key = *count_queued_.begin();
        count_queued_.erase(count_queued_.begin());
        const auto it = count_series_.find(key);
        if (it == count_series_.end() || std::ssize(it->second) < summary_.n_steps) {
            // The history is built, read for its counts and dropped: counts-only loads never
            // evict what the views hold in the history cache.
            const auto cached = histories_.find(key);
            const auto h = cached != histories_.end()
                               ? cached->second.history
                               : build_history(static_cast<int32_t>(key / summary_.n_heads),
                                               static_cast<int32_t>(key % summary_.n_heads));
            count_series_[key] = count_series(*h);
        }
        if (over_budget()) break;
    }
    return has_pending();
}

bool ReaderTraceModel::room_for_history() const {
    if (history_bytes_ + last_history_bytes_ <= history_cache_bytes_ || lru_.empty()) return true;
    // Evictable: the least recently used history was not asked for in the last frame.
    const auto it = histories_.find(lru_.back());
    return it == histories_.end() || it->second.used_frame < frame_ - 1;
}

ReaderTraceModel::CountSeries ReaderTraceModel::count_series(const HeadHistory& h) {
    CountSeries out(static_cast<size_t>(h.steps()));
    for (int64_t s = 0; s < h.steps(); ++s)
        out[static_cast<size_t>(s)] = {h.appended(s), h.held(s), h.held_bits(s), h.merged(s),
                                       h.evicted(s)};
    return out;
}

const trace::HeadCountRow* ReaderTraceModel::count_row(int64_t step) const {
    auto it = count_rows_.find(step);
    if (it == count_rows_.end()) {
        trace::HeadCountRow row =
            guarded([&] { return reader_.head_counts(step); }, trace::HeadCountRow{});
        const size_t lh = static_cast<size_t>(summary_.n_layers) * summary_.n_heads;
        if (row.appended.size() != lh || row.held.size() != lh || row.held_bits.size() != lh ||
            row.merged.size() != lh || row.evicted.size() != lh) {
            summary_broken_ = true;  // replay events from now on, instead of failing every cell
            return nullptr;
        }
        if (count_rows_.size() >= 256) count_rows_.clear();  // a few KB per row
        it = count_rows_.emplace(step, std::move(row)).first;
    }
    return &it->second;
}

std::optional<HeadCounts> ReaderTraceModel::head_counts(int32_t layer, int32_t head, int64_t step,
                                                        Load load) const {
    if (!valid_lh(layer, head)) return std::nullopt;
    // As HeadHistory answers: nothing before step 0, the last step beyond the recorded ones.
    if (step < 0 || summary_.n_steps <= 0) return HeadCounts{};
    step = std::min(step, summary_.n_steps - 1);
    const int64_t key = lh_key(layer, head);
    if (reader_.has_head_counts() && !summary_broken_) {
        if (const trace::HeadCountRow* row = count_row(step)) {
            const size_t i = static_cast<size_t>(key);
            return HeadCounts{row->appended[i], row->held[i], row->held_bits[i], row->merged[i],
                              row->evicted[i]};
        }
        // An unreadable /summary row: replay the events instead.
    }
    const auto it = count_series_.find(key);
    if (it != count_series_.end() && step < std::ssize(it->second))
        return it->second[static_cast<size_t>(step)];
    const auto cached = histories_.find(key);
    if (cached != histories_.end() && step < cached->second.history->steps()) {
        CountSeries& series = count_series_[key] = count_series(*cached->second.history);
        return series[static_cast<size_t>(step)];
    }
    if (load == Load::kLater) {
        count_queued_.insert(key);
        return std::nullopt;
    }
    count_queued_.erase(key);
    CountSeries& series = count_series_[key] = count_series(*build_history(layer, head));
    if (step >= std::ssize(series)) return std::nullopt;
    return series[static_cast<size_t>(step)];
}

// ---- Token states from /summary/prompt_state ---------------------------------------------------

bool ReaderTraceModel::has_head_states() const {
    return use_prompt_states_ && !states_broken_ && reader_.has_prompt_states();
}

bool ReaderTraceModel::read_decode_events() const {
    const int64_t S = summary_.n_steps;
    if (decode_steps_ == S && S > 0) return true;
    decode_events_.clear();
    decode_begin_.clear();
    decode_steps_ = 0;
    if (S <= 1) return false;
    const trace::StepRecord first = guarded([&] { return reader_.step(1); }, trace::StepRecord{});
    const int64_t rows = reader_.info().n_events - first.event_begin;
    if (rows < 0 || static_cast<size_t>(rows) > kMaxDecodeEvents) return false;
    std::vector<trace::EventRecord> events =
        guarded([&] { return reader_.events(1, S); }, std::vector<trace::EventRecord>{});
    if (std::ssize(events) != rows) return false;
    // Counting sort by (layer, head), stable: each head's events stay in step order.
    const size_t lh = static_cast<size_t>(summary_.n_layers) * summary_.n_heads;
    decode_begin_.assign(lh + 1, 0);
    for (const trace::EventRecord& e : events)
        if (valid_lh(e.layer, e.head))
            ++decode_begin_[static_cast<size_t>(lh_key(e.layer, e.head)) + 1];
    for (size_t k = 0; k < lh; ++k) decode_begin_[k + 1] += decode_begin_[k];
    decode_events_.resize(decode_begin_[lh]);
    std::vector<size_t> fill(decode_begin_.begin(), decode_begin_.end() - 1);
    for (const trace::EventRecord& e : events)
        if (valid_lh(e.layer, e.head))
            decode_events_[fill[static_cast<size_t>(lh_key(e.layer, e.head))]++] = e;
    decode_steps_ = S;
    return true;
}

void ReaderTraceModel::extend_states(HeadStates& h) const {
    const int64_t from = h.steps();
    const int64_t to = summary_.n_steps;
    if (from >= to) return;
    std::vector<trace::EventRecord> own;
    std::span<const trace::EventRecord> events;
    if (read_decode_events()) {
        const size_t k = static_cast<size_t>(lh_key(h.layer(), h.head()));
        events = std::span<const trace::EventRecord>(decode_events_)
                     .subspan(decode_begin_[k], decode_begin_[k + 1] - decode_begin_[k]);
    } else {
        own = guarded([&] { return reader_.events(h.layer(), h.head(), from, to); },
                      std::vector<trace::EventRecord>{});
        events = own;
    }
    size_t i = 0;
    while (i < events.size() && events[i].step < from) ++i;
    for (int64_t s = from; s < to; ++s) {
        size_t j = i;
        while (j < events.size() && events[j].step == s) ++j;
        h.apply_step(events.subspan(i, j - i));
        i = j;
    }
}

std::shared_ptr<HeadStates> ReaderTraceModel::build_states(int32_t layer, int32_t head) const {
    auto h = std::make_shared<HeadStates>(layer, head, summary_.n_prompt_tokens);
    if (!guarded(
            [&] {
                reader_.prompt_states(layer, head, h->prompt_codes());
                return true;
            },
            false)) {
        states_broken_ = true;  // the views fall back to replayed histories
        return nullptr;
    }
    extend_states(*h);
    return h;
}

void ReaderTraceModel::insert_states(int64_t key, std::shared_ptr<HeadStates> h) const {
    // Over the budget: drop what no view holds any more (a view's own working set stays).
    if (state_bytes_ + h->memory_bytes() > kStateCacheBytes) {
        for (auto it = states_.begin(); it != states_.end();) {
            if (it->second.use_count() == 1) {
                state_bytes_ -= it->second->memory_bytes();
                it = states_.erase(it);
            } else {
                ++it;
            }
        }
    }
    state_bytes_ += h->memory_bytes();
    states_[key] = std::move(h);
}

std::shared_ptr<const HeadStates> ReaderTraceModel::head_states(int32_t layer, int32_t head,
                                                                Load load) const {
    if (!valid_lh(layer, head) || !has_head_states()) return nullptr;
    const int64_t key = lh_key(layer, head);
    const auto it = states_.find(key);
    if (it != states_.end()) return it->second;
    if (load == Load::kLater) {
        states_queued_.insert(key);
        return nullptr;
    }
    states_queued_.erase(key);
    std::shared_ptr<HeadStates> h = build_states(layer, head);
    if (h) insert_states(key, h);
    return h;
}

// ---- Tables ---------------------------------------------------------------------------------

int32_t ReaderTraceModel::budget(int64_t step, int32_t layer, int32_t head) const {
    if (step < 0 || step >= summary_.n_steps || !valid_lh(layer, head)) return -1;
    std::vector<int32_t>& row = budget_rows_[static_cast<size_t>(step)];
    if (row.empty()) {
        row = guarded([&] { return reader_.budgets(step); }, std::vector<int32_t>{});
        if (row.empty()) row.assign(static_cast<size_t>(summary_.n_layers) * summary_.n_heads, -1);
    }
    const size_t i = static_cast<size_t>(lh_key(layer, head));
    return i < row.size() ? row[i] : -1;
}

bool ReaderTraceModel::has_budgets() const {
    if (has_budgets_ < 0 && summary_.n_steps > 0) {
        has_budgets_ = 0;
        for (int64_t s : {int64_t{0}, summary_.n_steps - 1}) {
            budget(s, 0, 0);
            for (int32_t b : budget_rows_[static_cast<size_t>(s)]) {
                if (b >= 0) has_budgets_ = 1;
            }
        }
    }
    return has_budgets_ == 1;
}

int64_t ReaderTraceModel::bytes_held(int64_t step, int32_t layer) const {
    const int64_t i = step * summary_.n_layers + layer;
    if (step < 0 || layer < 0 || layer >= summary_.n_layers || i >= std::ssize(bytes_held_)) {
        return -1;
    }
    return bytes_held_[static_cast<size_t>(i)];
}

std::shared_ptr<const std::vector<float>> ReaderTraceModel::prefill_vector(bool norms,
                                                                           int32_t layer,
                                                                           int32_t head) const {
    if (!valid_lh(layer, head)) return std::make_shared<const std::vector<float>>();
    const auto key = std::make_pair(lh_key(layer, head), norms);
    auto it = prefill_vectors_.find(key);
    if (it != prefill_vectors_.end()) return it->second;
    if (prefill_vectors_.size() >= 64) prefill_vectors_.clear();
    auto v = std::make_shared<const std::vector<float>>(guarded(
        [&] { return norms ? reader_.key_norm(layer, head) : reader_.attn_received(layer, head); },
        std::vector<float>{}));
    prefill_vectors_.emplace(key, v);
    return v;
}

std::shared_ptr<const std::vector<float>> ReaderTraceModel::key_norm(int32_t layer,
                                                                     int32_t head) const {
    return prefill_vector(true, layer, head);
}

std::shared_ptr<const std::vector<float>> ReaderTraceModel::attn_received(int32_t layer,
                                                                          int32_t head) const {
    return prefill_vector(false, layer, head);
}

std::vector<float> ReaderTraceModel::window_scores(int32_t layer, int32_t head) const {
    if (!valid_lh(layer, head)) return {};
    return guarded([&] { return reader_.window_scores(layer, head); }, std::vector<float>{});
}

float ReaderTraceModel::spearman(int32_t layer, int32_t head) const {
    const size_t i = static_cast<size_t>(lh_key(layer, head));
    return valid_lh(layer, head) && i < spearman_.size() ? spearman_[i] : kNaN;
}

float ReaderTraceModel::density(int32_t layer, int32_t head) const {
    const size_t i = static_cast<size_t>(lh_key(layer, head));
    return valid_lh(layer, head) && i < density_.size() ? density_[i] : kNaN;
}

float ReaderTraceModel::density_layer(int32_t layer) const {
    return layer >= 0 && static_cast<size_t>(layer) < density_layer_.size()
               ? density_layer_[static_cast<size_t>(layer)]
               : kNaN;
}

int8_t ReaderTraceModel::answer_found(int32_t span) const {
    return span >= 0 && static_cast<size_t>(span) < answer_found_.size()
               ? answer_found_[static_cast<size_t>(span)]
               : int8_t{-1};
}

float ReaderTraceModel::needle_survival(int32_t span, int64_t step, int32_t layer,
                                        int32_t head) const {
    if (span < 0 || static_cast<size_t>(span) >= spans().size() || step < 0 ||
        step >= summary_.n_steps || !valid_lh(layer, head)) {
        return kNaN;
    }
    std::vector<float>& series = needle_series_[span];
    const int64_t per_step = static_cast<int64_t>(summary_.n_layers) * summary_.n_heads;
    const int64_t have = std::ssize(series) / per_step;
    if (have < summary_.n_steps) {
        std::vector<float> more =
            guarded([&] { return reader_.needle_survival(span, have, summary_.n_steps); },
                    std::vector<float>{});
        if (more.empty())
            more.assign(static_cast<size_t>((summary_.n_steps - have) * per_step), kNaN);
        series.insert(series.end(), more.begin(), more.end());
    }
    const int64_t i = step * per_step + lh_key(layer, head);
    return i < std::ssize(series) ? series[static_cast<size_t>(i)] : kNaN;
}

// ---- Live follow ----------------------------------------------------------------------------

bool ReaderTraceModel::refresh() {
    if (!guarded([&] { return reader_.refresh(); }, false)) return false;
    const int64_t old_tokens = summary_.n_tokens;
    fill_summary();
    // The last token page may have been partial; prefill statistics may have been completed.
    if (old_tokens > 0) token_pages_.erase((old_tokens - 1) / kTokenPage);
    step_infos_.clear();
    prefill_vectors_.clear();
    load_tables();
    decode_steps_ = 0;  // the decode events are read again, with the new steps
    state_bytes_ = 0;
    for (auto& [key, states] : states_) {
        extend_states(*states);
        state_bytes_ += states->memory_bytes();
    }
    for (auto& [key, cached] : histories_) {
        history_bytes_ -= cached.bytes;
        extend_history(*cached.history);
        cached.bytes = cached.history->memory_bytes();
        history_bytes_ += cached.bytes;
    }
    return true;
}

}  // namespace kvscope::views
