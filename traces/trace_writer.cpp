// TraceWriter: argument checks on the caller's thread, a bounded queue, and the writer thread
// that drives TraceFileWriter (all HDF5 work happens there).
#include "traces/trace_writer.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <variant>

#include "core/error.h"
#include "kvscope_version.h"
#include "traces/trace_file_writer_internal.h"
#include "traces/trace_output.h"

namespace kvscope::trace {

namespace {
struct BeginItem {
    RunMetadata meta;
    TraceFileWriter::Config config;
    std::promise<void> done;
};
struct TokensItem {
    std::vector<TokenRecord> tokens;
};
struct PrefillItem {
    PrefillLayerStats stats;
};
struct MapItem {
    int32_t layer;
    std::vector<float> attention;
};
struct EventsItem {
    std::vector<EventRecord> events;
};
struct StepItem {
    StepData data;
};
struct SyncItem {
    std::promise<void> done;
};
struct EndItem {
    RunEnd end;
    std::promise<void> done;
};
struct CloseItem {
    std::promise<void> done;
};
using Item = std::variant<BeginItem, TokensItem, PrefillItem, MapItem, EventsItem, StepItem,
                          SyncItem, EndItem, CloseItem>;

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("TraceWriter: " + what);
}
}  // namespace

struct TraceWriter::Impl {
    std::filesystem::path path;
    size_t capacity = 64;
    std::mutex mu;
    std::condition_variable not_full, not_empty, map_slot;
    int maps_queued = 0;  // MapItems queued or being written (<= kMaxQueuedMaps)
    std::vector<std::vector<float>> spent_maps;  // written maps' buffers, cleared, for reuse
    std::deque<Item> queue;
    std::exception_ptr error;  // first writer-thread failure
    std::thread thread;
    std::unique_ptr<TraceFileWriter> file;  // writer thread only

    void push(Item item) {
        std::unique_lock lock(mu);
        not_full.wait(lock, [&] { return queue.size() < capacity; });
        queue.push_back(std::move(item));
        not_empty.notify_one();
    }

    void push_map(MapItem item) {
        {
            std::unique_lock lock(mu);
            map_slot.wait(lock, [&] { return maps_queued < TraceWriter::kMaxQueuedMaps; });
            ++maps_queued;
        }
        push(std::move(item));
    }

    void rethrow_error() {
        std::lock_guard lock(mu);
        if (error) std::rethrow_exception(error);
    }

    // Runs one item; a failure is stored and later items only release their waiters.
    void handle(Item& item) {
        std::visit(
            [&](auto& it) {
                using T = std::decay_t<decltype(it)>;
                bool failed;
                {
                    std::lock_guard lock(mu);
                    failed = error != nullptr;
                }
                try {
                    if (failed) {
                        // Close what can be closed; flushed steps stay readable.
                        if constexpr (std::is_same_v<T, EndItem> || std::is_same_v<T, CloseItem>)
                            close_quietly();
                        if constexpr (std::is_same_v<T, CloseItem>)
                            it.done.set_value();
                        else if constexpr (requires { it.done; })
                            it.done.set_exception(error);
                        return;
                    }
                    if constexpr (std::is_same_v<T, BeginItem>) {
                        file = std::make_unique<TraceFileWriter>(path, it.meta, it.config);
                    } else if constexpr (std::is_same_v<T, TokensItem>) {
                        file->write_tokens(it.tokens);
                    } else if constexpr (std::is_same_v<T, PrefillItem>) {
                        file->write_prefill(it.stats);
                    } else if constexpr (std::is_same_v<T, MapItem>) {
                        file->write_map(it.layer, it.attention);
                    } else if constexpr (std::is_same_v<T, EventsItem>) {
                        file->add_events(it.events);
                    } else if constexpr (std::is_same_v<T, StepItem>) {
                        file->write_step(it.data);
                    } else if constexpr (std::is_same_v<T, SyncItem>) {
                        file->commit();
                        file->flush();
                    } else if constexpr (std::is_same_v<T, EndItem>) {
                        file->end(it.end);
                        file.reset();
                    } else if constexpr (std::is_same_v<T, CloseItem>) {
                        if (file) file->close();
                        file.reset();
                    }
                    if constexpr (requires { it.done; }) it.done.set_value();
                } catch (...) {
                    std::exception_ptr e = std::current_exception();
                    {
                        std::lock_guard lock(mu);
                        if (!error) error = wrap(e);
                    }
                    if constexpr (requires { it.done; }) it.done.set_exception(error);
                }
            },
            item);
    }

    // Group commit: flush once the queue is drained (every step when the producer is slower
    // than the disk), or after kMaxUncommittedSteps steps when it is not.
    void commit_if_idle() {
        bool idle;
        {
            std::lock_guard lock(mu);
            idle = queue.empty();
            if (error) return;
        }
        if (!file) return;
        if (!idle && file->uncommitted_steps() < TraceFileWriter::kMaxUncommittedSteps) return;
        try {
            file->commit();
        } catch (...) {
            std::lock_guard lock(mu);
            if (!error) error = wrap(std::current_exception());
        }
    }

    void close_quietly() {
        try {
            if (file) file->close();
        } catch (...) {
        }
        file.reset();
    }

    // Errors of HDF5 calls name the trace file; InputErrors already do.
    std::exception_ptr wrap(std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const InputError&) {
            return e;
        } catch (const std::exception& x) {
            const std::filesystem::path part = recording_path_for(path);
            return std::make_exception_ptr(std::runtime_error(
                part.string() + ": writing the trace failed: " + x.what() +
                " (the steps committed so far stay readable in " + part.filename().string() + "; " +
                path.filename().string() + " was not changed)"));
        } catch (...) {
            return e;
        }
    }

    void run() {
        for (;;) {
            Item item;
            {
                std::unique_lock lock(mu);
                not_empty.wait(lock, [&] { return !queue.empty(); });
                item = std::move(queue.front());
                queue.pop_front();
                not_full.notify_one();
            }
            bool last =
                std::holds_alternative<EndItem>(item) || std::holds_alternative<CloseItem>(item);
            handle(item);
            if (std::holds_alternative<MapItem>(item)) {
                std::vector<float> buf = std::move(std::get<MapItem>(item).attention);
                buf.clear();
                std::lock_guard lock(mu);
                if (spent_maps.size() < static_cast<size_t>(TraceWriter::kMaxQueuedMaps))
                    spent_maps.push_back(std::move(buf));
                --maps_queued;
                map_slot.notify_all();
            } else if (std::holds_alternative<StepItem>(item)) {
                // Maps come before step 0 (FIFO): their buffers are not needed during decode.
                std::lock_guard lock(mu);
                spent_maps.clear();
            }
            if (last) return;
            commit_if_idle();
        }
    }
};

TraceWriter::TraceWriter(std::filesystem::path path, Options options)
    : path_(std::move(path)),
      recording_path_(recording_path_for(path_)),
      options_(options),
      impl_(std::make_unique<Impl>()) {
    impl_->path = path_;
    impl_->capacity = std::max<size_t>(options.queue_capacity, 1);
}

TraceWriter::~TraceWriter() {
    if (!begun_ || ended_) return;
    try {
        CloseItem close;
        auto done = close.done.get_future();
        impl_->push(std::move(close));
        done.wait();
    } catch (...) {
        // Closing an unfinished trace is best effort; the data flushed so far stays readable.
    }
    if (impl_->thread.joinable()) impl_->thread.join();
}

bool TraceWriter::maps_recorded() const {
    return options_.record_maps && meta_.n_prompt_tokens <= kMaxMapTokens;
}

void TraceWriter::begin(const RunMetadata& metadata) {
    require(!begun_, "begin() called twice");
    require(metadata.n_layers > 0, "n_layers must be > 0");
    require(metadata.n_heads > 0, "n_heads must be > 0");
    require(metadata.n_prompt_tokens > 0, "n_prompt_tokens must be > 0");
    require(metadata.top_k >= 0, "top_k must be >= 0");
    require(metadata.n_layers <= 32767 && metadata.n_heads <= 32767, "too many layers or heads");
    for (const auto& s : metadata.spans)
        require(s.begin >= 0 && s.begin <= s.end,
                "span [" + std::to_string(s.begin) + ", " + std::to_string(s.end) + ") is invalid");
    meta_ = metadata;
    if (meta_.software_version.empty()) meta_.software_version = KVSCOPE_VERSION;
    TraceFileWriter::Config config;
    config.record_attention_rows = options_.record_attention_rows;
    config.record_maps = maps_recorded();
    config.compression_level = std::clamp(options_.compression_level, 0, 9);
    config.overwrite = options_.overwrite;

    impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
    begun_ = true;
    BeginItem item{meta_, config, {}};
    auto done = item.done.get_future();
    impl_->push(std::move(item));
    try {
        done.get();
    } catch (...) {
        // The thread stops on the first failure only at end/close; stop it now.
        ended_ = true;
        impl_->push(CloseItem{});
        impl_->thread.join();
        throw;
    }
}

void TraceWriter::write_tokens(std::vector<TokenRecord> tokens) {
    require(begun_ && !ended_, "write_tokens() outside begin()/end()");
    impl_->rethrow_error();
    impl_->push(TokensItem{std::move(tokens)});
}

void TraceWriter::write_prefill(PrefillLayerStats stats) {
    require(begun_ && !ended_, "write_prefill() outside begin()/end()");
    const size_t H = static_cast<size_t>(meta_.n_heads);
    const size_t HP = H * static_cast<size_t>(meta_.n_prompt_tokens);
    require(stats.layer >= 0 && stats.layer < meta_.n_layers, "prefill layer out of range");
    auto sized = [&](const std::vector<float>& v, size_t n, const char* what) {
        require(v.empty() || v.size() == n, std::string("prefill ") + what + " has " +
                                                std::to_string(v.size()) + " values, expected " +
                                                std::to_string(n));
    };
    sized(stats.key_norm, HP, "key_norm");
    sized(stats.attn_received, HP, "attn_received");
    sized(stats.window_scores, HP, "window_scores");
    sized(stats.density, H, "density");
    sized(stats.spearman, H, "spearman");
    sized(stats.norm_attn_area, H, "norm_attn_area");
    impl_->rethrow_error();
    impl_->push(PrefillItem{std::move(stats)});
}

void TraceWriter::write_prefill_map(int32_t layer, std::vector<float> attention) {
    require(begun_ && !ended_, "write_prefill_map() outside begin()/end()");
    if (!maps_recorded()) return;
    require(layer >= 0 && layer < meta_.n_layers, "map layer out of range");
    const size_t P = static_cast<size_t>(meta_.n_prompt_tokens);
    require(attention.size() == static_cast<size_t>(meta_.n_heads) * P * P,
            "prefill map must hold H*P*P values");
    impl_->rethrow_error();
    impl_->push_map(MapItem{layer, std::move(attention)});
}

std::vector<float> TraceWriter::recycled_map_buffer() {
    std::lock_guard lock(impl_->mu);
    if (impl_->spent_maps.empty()) return {};
    std::vector<float> buf = std::move(impl_->spent_maps.back());
    impl_->spent_maps.pop_back();
    return buf;
}

namespace {
void check_events(const std::vector<EventRecord>& events, const RunMetadata& m) {
    for (const auto& e : events) {
        require(e.layer >= 0 && e.layer < m.n_layers && e.head >= 0 && e.head < m.n_heads,
                "event (layer " + std::to_string(e.layer) + ", head " + std::to_string(e.head) +
                    ") out of range");
        require(static_cast<int>(e.op) < kNumCacheOps, "event op out of range");
    }
}
}  // namespace

void TraceWriter::add_events(std::vector<EventRecord> events) {
    require(begun_ && !ended_, "add_events() outside begin()/end()");
    check_events(events, meta_);
    impl_->rethrow_error();
    impl_->push(EventsItem{std::move(events)});
}

void TraceWriter::write_step(StepData data) {
    require(begun_ && !ended_, "write_step() outside begin()/end()");
    const auto& r = data.record;
    const size_t L = static_cast<size_t>(meta_.n_layers), H = static_cast<size_t>(meta_.n_heads);
    require(r.step == steps_queued_, "step " + std::to_string(r.step) + " written, expected " +
                                         std::to_string(steps_queued_));
    require(r.topk_ids.size() == r.topk_logprobs.size(), "topk ids and logprobs differ in size");
    require(r.topk_ids.size() <= static_cast<size_t>(meta_.top_k), "more than top_k entries");
    require(r.bytes_held.size() == L, "bytes_held must hold n_layers values");
    require(data.budgets.empty() || data.budgets.size() == L * H, "budgets must hold L*H values");
    require(
        data.needle_survival.empty() || data.needle_survival.size() == meta_.spans.size() * L * H,
        "needle_survival must hold n_spans*L*H values");
    check_events(data.events, meta_);
    if (options_.record_attention_rows) {
        for (const auto& row : data.attention) {
            require(row.layer >= 0 && row.layer < meta_.n_layers && row.head >= 0 &&
                        row.head < meta_.n_heads,
                    "attention row (layer, head) out of range");
            require(row.positions.size() == row.values.size(),
                    "attention row positions and values differ in size");
        }
    } else {
        data.attention.clear();
    }
    impl_->rethrow_error();
    ++steps_queued_;
    impl_->push(StepItem{std::move(data)});
}

void TraceWriter::sync() {
    require(begun_ && !ended_, "sync() outside begin()/end()");
    SyncItem item;
    auto done = item.done.get_future();
    impl_->push(std::move(item));
    done.get();
}

void TraceWriter::end(const RunEnd& end) {
    require(begun_ && !ended_, "end() outside begin() or called twice");
    ended_ = true;
    EndItem item{end, {}};
    auto done = item.done.get_future();
    impl_->push(std::move(item));
    impl_->thread.join();
    done.get();
}

}  // namespace kvscope::trace
