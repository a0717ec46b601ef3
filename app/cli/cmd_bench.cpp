// kvscope bench: how fast a model runs here, against the floor measured in the same run.
//   kvscope bench --model DIR --device cuda --lengths 1024,8192,32768 --decode-steps 32
// For `full` and one compressing policy (--policy, --ratio), at each prompt length, with recording
// off and on (a real trace written by the recorder to a temporary file): prefill time, decode
// ms/token, bytes a decode step must read (weights as stored + the KV bytes the cache holds),
// effective GB/s and % of the bandwidth floor (a device-to-device memcpy on CUDA, a memcpy on the
// CPU, measured first), and peak memory. Prompts are random token ids (seeded): the weights do
// the work, the text does not matter. Prints a table; --json writes the rows.
// The prefill is timed --prefill-reps times (default 3, the median reported, every time in the
// JSON): the first prompt of a length also pays first allocations (device slabs, pinned and
// first-touched host buffers), which HF's peer (bench/hf_peer.py, median of 3) does not show;
// decode runs after the last one.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/policy_flags.h"
#include "app/recorder/run_recorder.h"
#include "app/recorder/run_setup.h"
#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/error.h"
#include "traces/trace_writer.h"

namespace kvscope::cli {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

struct BenchArgs {
    ModelArgs m;
    PolicyArgs policy;
    std::string lengths = "1024,8192,32768";
    int decode_steps = 32;
    std::string recording = "off,on";
    std::string json;
    int64_t floor_mib = 0;  // 0: 1024 MiB on CUDA, 128 MiB on the CPU
    uint64_t seed = 1;
    int prefill_reps = 3;
    bool quiet = false;
};

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i <= s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

int64_t weight_bytes(const Model& model) {
    int64_t b = 0;
    for (const auto& [name, t] : model.weights.all()) {
        int64_t n = 1;
        for (int64_t s : t.shape) n *= s;
        b += n * static_cast<int64_t>(dtype_size(t.dtype));
    }
    return b;
}

int64_t max_rss_bytes() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

int32_t argmax(const std::vector<float>& v) {
    return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct Row {
    std::string policy;
    int64_t length = 0;
    bool recording = false;
    double prefill_ms = 0, decode_ms_per_token = 0;
    std::vector<double> prefill_reps_ms;  // every timed prefill, in order (prefill_ms: median)
    int64_t bytes_per_step = 0, kv_bytes = 0;
    double gbs = 0, pct_floor = 0;
    int64_t peak_backend = 0, device_used = -1, max_rss = 0;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<BenchArgs>();
    a->policy.name = "snapkv";
    a->policy.ratio = 0.25;
    add_model_options(sub, a->m);
    sub.add_option("--lengths", a->lengths, "Prompt lengths in tokens, comma-separated")
        ->capture_default_str();
    sub.add_option("--decode-steps", a->decode_steps, "Decode steps timed after each prefill")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    sub.add_option("--recording", a->recording,
                   "off, on, or off,on (a trace written by the "
                   "recorder to a temporary file)")
        ->capture_default_str();
    sub.add_option("--json", a->json,
                   "Also write the rows as JSON to this file; '-': print them on stdout as the "
                   "only output (the table goes to stderr)");
    sub.add_option("--floor-mib", a->floor_mib,
                   "Size of the copy that measures the bandwidth floor (default 1024 MiB on "
                   "CUDA, 128 MiB on the CPU)")
        ->check(CLI::NonNegativeNumber);
    sub.add_option("--seed", a->seed, "Seed of the random prompt tokens");
    sub.add_option("--prefill-reps", a->prefill_reps,
                   "Times each prefill is timed (the median is reported; the first also pays "
                   "first allocations); decode follows the last")
        ->check(CLI::Range(1, 100))
        ->capture_default_str();
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    add_policy_options(sub, a->policy);  // the compressing policy (default snapkv, ratio 0.25)
    return [a]() {
        // --json -: the JSON document alone on stdout, the text on stderr.
        const bool json_stdout = a->json == "-";
        FILE* txt = json_stdout ? stderr : stdout;
        std::vector<int64_t> lengths;
        for (const auto& s : split(a->lengths)) {
            const std::vector<int32_t> v = parse_id_list(s, "--lengths");
            if (v.size() != 1 || v[0] < 2)
                throw InputError("--lengths: '" + s + "' is not a length >= 2");
            lengths.push_back(v[0]);
        }
        if (lengths.empty()) throw InputError("--lengths: no length given");
        std::vector<bool> recs;
        for (const auto& s : split(a->recording)) {
            if (s != "off" && s != "on")
                throw InputError("--recording: expected off, on or off,on");
            recs.push_back(s == "on");
        }
        if (recs.empty()) throw InputError("--recording: expected off, on or off,on");
        std::vector<PolicyArgs> policies{PolicyArgs{}};
        if (a->policy.name != "full") policies.push_back(a->policy);

        Loaded L = load_model_and_tokenizer(a->m, true);
        const ModelSpec& sp = L.model->spec;
        // One backend per row: the engine uploads the weights when it is built and the backend
        // frees them when it goes, so rows never hold two copies and each row's peak is its own.
        double floor_gbs = 0;
        bool cuda = false;
        std::string device_desc, backend_name;
        int64_t floor_bytes = 0;
        {
            auto backend = make_backend(a->m.device, a->m.threads);
            device_desc = backend->describe();
            backend_name = backend->name();
            std::fprintf(txt, "kvscope bench: %s on %s\n", a->m.model.c_str(), device_desc.c_str());
            cuda = backend->device() == DeviceKind::kCuda;
            floor_bytes =
                (a->floor_mib > 0 ? a->floor_mib : (cuda ? 1024 : 128)) * (int64_t{1} << 20);
            floor_gbs = backend->measure_copy_gbs(static_cast<size_t>(floor_bytes), 9);
        }
        const int64_t wbytes = weight_bytes(*L.model);
        std::fprintf(
            txt,
            "floor: %.1f GB/s (copy of %lld MiB, read + write, median of 9); weights %.3f GB\n",
            floor_gbs, static_cast<long long>(floor_bytes >> 20),
            static_cast<double>(wbytes) / 1e9);

        const int32_t vocab = std::min<int32_t>(static_cast<int32_t>(sp.vocab_size),
                                                static_cast<int32_t>(L.tokenizer->vocab_size()));
        std::vector<Row> rows;
        std::fprintf(txt, "\n%-16s %7s %4s %11s %10s %12s %11s %9s %7s %10s\n", "policy", "length",
                     "rec", "prefill ms", "prefill t/s", "decode ms/t", "bytes/step", "GB/s",
                     "%floor", "peak MiB");
        // One step per row (a prefill and the decode steps): count and ETA on stderr.
        Progress progress("bench", a->quiet);
        const auto total = static_cast<int64_t>(policies.size() * lengths.size() * recs.size());
        for (const PolicyArgs& pa : policies) {
            for (int64_t len : lengths) {
                std::mt19937_64 rng(a->seed + static_cast<uint64_t>(len));
                std::uniform_int_distribution<int32_t> tok(std::min<int32_t>(3, vocab - 1),
                                                           vocab - 1);
                std::vector<int32_t> ids(static_cast<size_t>(len));
                for (auto& t : ids) t = tok(rng);
                for (bool rec_on : recs) {
                    progress.update(static_cast<int64_t>(rows.size()), total,
                                    pa.name + " " + std::to_string(len) + (rec_on ? " rec" : ""));
                    Row r;
                    r.policy = pa.name == "full" ? "full" : pa.name;
                    r.length = len;
                    r.recording = rec_on;
                    auto policy = make_policy_from_args(pa, sp, len, rec_on);
                    record::RecorderOptions ro;
                    EngineOptions eo;
                    eo.threads = a->m.threads;
                    if (rec_on) eo.stats = record::RunRecorder::stats_needed(ro, len);
                    auto backend = make_backend(a->m.device, a->m.threads);
                    Engine engine(*L.model, *backend, eo);
                    engine.set_policy(policy.get());
                    {  // warm-up (cuBLAS, kernel loading, first-touch pages) out of the timing
                        std::vector<int32_t> w(static_cast<size_t>(std::min<int64_t>(len, 64)), 3);
                        (void)engine.decode(argmax(engine.prefill(w)));
                    }
                    const int steps = a->decode_steps;
                    // Reps before the last: the same prefill (recorded: its trace written as in
                    // the last one, to a file of its own), timed; the last goes on to decode.
                    const fs::path rep_trace =
                        fs::temp_directory_path() /
                        ("kvscope_bench_rep_" + std::to_string(::getpid()) + ".kvtrace.h5");
                    for (int rep = 0; rep + 1 < a->prefill_reps; ++rep) {
                        if (!rec_on) {
                            const auto t0 = clock_type::now();
                            (void)engine.prefill(ids);
                            r.prefill_reps_ms.push_back(ms_since(t0));
                            continue;
                        }
                        record::RunInput in;
                        in.ids = ids;
                        record::SamplingOptions so;
                        const trace::RunMetadata meta = record::make_run_metadata(
                            *L.model, a->m.model, *L.tokenizer, policy.get(), pa.name, pa.ratio, in,
                            so, backend_name, ro.top_k);
                        trace::TraceWriter::Options wo;
                        wo.overwrite = true;
                        {
                            trace::TraceWriter writer(rep_trace, wo);
                            record::RunRecorder rec(engine, *L.tokenizer, writer, ro);
                            rec.begin(meta, ids);
                            const auto t0 = clock_type::now();
                            (void)engine.prefill(ids);
                            rec.write_prefill();
                            r.prefill_reps_ms.push_back(ms_since(t0));
                            trace::RunEnd end;
                            end.reason = "bench repetition";
                            rec.end(end);
                        }
                        std::error_code ec;
                        fs::remove(rep_trace, ec);
                    }
                    if (!rec_on) {
                        auto t0 = clock_type::now();
                        std::vector<float> logits = engine.prefill(ids);
                        r.prefill_ms = ms_since(t0);
                        int32_t next = argmax(logits);
                        t0 = clock_type::now();
                        for (int s = 0; s < steps; ++s) next = argmax(engine.decode(next));
                        r.decode_ms_per_token = ms_since(t0) / steps;
                    } else {
                        const fs::path trace =
                            fs::temp_directory_path() /
                            ("kvscope_bench_" + std::to_string(::getpid()) + ".kvtrace.h5");
                        record::RunInput input;
                        input.ids = ids;
                        record::SamplingOptions so;
                        so.max_new = steps + 1;  // step 0 samples from the prefill's logits
                        so.ignore_eos = true;
                        trace::RunMetadata meta = record::make_run_metadata(
                            *L.model, a->m.model, *L.tokenizer, policy.get(), pa.name, pa.ratio,
                            input, so, backend_name, ro.top_k);
                        trace::TraceWriter::Options wo;
                        wo.overwrite = true;
                        {
                            trace::TraceWriter writer(trace, wo);
                            record::RunRecorder rec(engine, *L.tokenizer, writer, ro);
                            rec.begin(meta, ids);
                            auto t0 = clock_type::now();
                            std::vector<float> logits = engine.prefill(ids);
                            rec.write_prefill();
                            r.prefill_ms = ms_since(t0);
                            const record::DecodeOutcome out = record::decode_and_record(
                                engine, rec, std::move(logits), static_cast<float>(r.prefill_ms),
                                so, nullptr, {});
                            r.decode_ms_per_token = out.decode_ms / steps;
                            trace::RunEnd end;
                            end.prefill_ms = r.prefill_ms;
                            end.decode_ms = out.decode_ms;
                            end.complete = true;
                            end.reason = out.reason;
                            rec.end(end);
                        }
                        std::error_code ec;
                        fs::remove(trace, ec);
                    }
                    r.prefill_reps_ms.push_back(r.prefill_ms);
                    {
                        std::vector<double> sorted = r.prefill_reps_ms;
                        std::sort(sorted.begin(), sorted.end());
                        const size_t m = sorted.size();
                        r.prefill_ms =
                            m % 2 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2;
                    }
                    r.kv_bytes = engine.cache().bytes_held();
                    r.bytes_per_step = wbytes + r.kv_bytes;
                    r.gbs =
                        static_cast<double>(r.bytes_per_step) / (r.decode_ms_per_token / 1e3) / 1e9;
                    r.pct_floor = floor_gbs > 0 ? 100.0 * r.gbs / floor_gbs : 0.0;
                    const Backend::MemoryInfo mem = backend->memory();
                    r.peak_backend = mem.peak;
                    if (mem.device_total >= 0) r.device_used = mem.device_total - mem.device_free;
                    r.max_rss = max_rss_bytes();
                    progress.clear();
                    std::fprintf(
                        txt, "%-16s %7lld %4s %11.1f %10.0f %12.3f %11.3g %9.1f %6.1f%% %10.1f\n",
                        r.policy.c_str(), static_cast<long long>(len), rec_on ? "on" : "off",
                        r.prefill_ms, static_cast<double>(len) / (r.prefill_ms / 1e3),
                        r.decode_ms_per_token, static_cast<double>(r.bytes_per_step), r.gbs,
                        r.pct_floor,
                        static_cast<double>(r.peak_backend + (cuda ? 0 : wbytes)) / (1 << 20));
                    std::fflush(stdout);
                    rows.push_back(r);
                    progress.update(static_cast<int64_t>(rows.size()), total);
                }
            }
        }
        progress.finish();
        std::fprintf(txt,
                     "\nprefill ms = median of %d prefills of the prompt (--prefill-reps; the "
                     "first pays first allocations); bytes/step = weights as stored + KV bytes "
                     "the cache holds after the run; GB/s = bytes/step / decode time; peak = %s\n",
                     a->prefill_reps,
                     cuda ? "device memory the backend held (weights, activations, scratch)"
                          : "activations the backend held + the mmapped weights");
        if (!a->json.empty()) {
            nlohmann::json j;
            j["model"] = a->m.model;
            j["device"] = device_desc;
            j["backend"] = backend_name;
            j["floor_gbs"] = floor_gbs;
            j["floor_bytes"] = floor_bytes;
            j["weight_bytes"] = wbytes;
            j["decode_steps"] = a->decode_steps;
            j["prefill_reps"] = a->prefill_reps;
            for (const Row& r : rows)
                j["rows"].push_back({{"policy", r.policy},
                                     {"length", r.length},
                                     {"recording", r.recording},
                                     {"prefill_ms", r.prefill_ms},
                                     {"prefill_reps_ms", r.prefill_reps_ms},
                                     {"decode_ms_per_token", r.decode_ms_per_token},
                                     {"bytes_per_step", r.bytes_per_step},
                                     {"kv_bytes", r.kv_bytes},
                                     {"gbs", r.gbs},
                                     {"pct_floor", r.pct_floor},
                                     {"peak_backend_bytes", r.peak_backend},
                                     {"device_used_bytes", r.device_used},
                                     {"max_rss_bytes", r.max_rss}});
            if (json_stdout) {
                std::printf("%s\n", j.dump(2).c_str());
                return 0;
            }
            std::ofstream f(a->json);
            if (!f) throw InputError(a->json, "cannot write");
            f << j.dump(2) << "\n";
        }
        return 0;
    };
}

}  // namespace

KVSCOPE_COMMAND("bench",
                "Time prefill and decode (recording off/on, full and a compressing policy) "
                "against the bandwidth floor measured in the same run",
                setup);

}  // namespace kvscope::cli
