// Host KV-cache append throughput for a GPU prefill (issue 9; not a timed test). A prompt's keys
// and values, laid out as the engine gets them back from the device ([n, G, d] per layer), go into
// fresh host memory for every layer of a model shape, three ways in one run:
//   vector  per head a std::vector<float> reserved and filled row by row (the cache's storage
//           before core/cache/row_storage.h: 4 KiB pages, one thread),
//   layer   KVCache::append_layer, inline (row arrays mapped with the huge-page hint),
//   pooled  KVCache::append_layer on a host thread pool (what the engine does for large layers),
// against the floor of this machine: one thread's memcpy of the same bytes into memory already
// touched. Each repetition starts from fresh memory, since first touches are what a prefill pays
// (the 8B shape at 8k tokens on an H100 host: 826 ms of a 2.5 s prefill, bench/RESULTS.md).
//
//   bench_host_cache [tokens=8192] [layers=32] [kv_heads=8] [head_dim=128] [threads=0: all cores]
// Prints one row per way: median ms of 3 repetitions (each in a fresh child process), GB/s of K+V
// bytes, and x the floor's time.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/cache/kv_cache.h"
#include "kernels/cpu/thread_pool.h"

using namespace kvscope;
using clk = std::chrono::steady_clock;

namespace {

double ms_since(clk::time_point t0) {
    return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int64_t arg(int argc, char** argv, int i, int64_t fallback) {
    if (argc <= i) return fallback;
    char* end = nullptr;
    const long long v = std::strtoll(argv[i], &end, 10);
    if (!end || *end || v < 0) {
        std::fprintf(stderr, "bench_host_cache: argument %d (\"%s\") is not a count\n", i, argv[i]);
        std::exit(2);
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 6) {
        std::fprintf(stderr,
                     "usage: bench_host_cache [tokens] [layers] [kv_heads] [head_dim] [threads]\n");
        return 2;
    }
    const int64_t n = arg(argc, argv, 1, 8192), L = arg(argc, argv, 2, 32),
                  G = arg(argc, argv, 3, 8), d = arg(argc, argv, 4, 128);
    int threads = static_cast<int>(arg(argc, argv, 5, 0));
    if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (n == 0 || L == 0 || G == 0 || d == 0) {
        std::fprintf(stderr, "bench_host_cache: sizes must be positive\n");
        return 2;
    }
    const auto layer_floats = static_cast<size_t>(n * G * d);
    std::vector<float> k(layer_floats), v(layer_floats);  // one layer, reused for every layer
    for (size_t i = 0; i < layer_floats; ++i) {
        k[i] = static_cast<float>(i % 977) * 0.5f;
        v[i] = -static_cast<float>(i % 613);
    }
    std::vector<int64_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = i;
    const double bytes = 2.0 * static_cast<double>(layer_floats * sizeof(float) * L);
    std::printf(
        "host KV append: %lld tokens x %lld layers x %lld KV heads x head_dim %lld = %.2f GB "
        "of K+V; pool of %d threads\n",
        static_cast<long long>(n), static_cast<long long>(L), static_cast<long long>(G),
        static_cast<long long>(d), bytes / 1e9, threads);
    constexpr int kReps = 3;
    // Each repetition runs in a child process: its memory is fresh (malloc cannot hand back pages
    // an earlier repetition touched), as in a prefill after the model is loaded.
    auto in_child = [&](const std::function<double()>& way) {
        std::vector<double> t;
        for (int r = 0; r < kReps; ++r) {
            int fd[2];
            if (::pipe(fd) != 0) {
                std::perror("bench_host_cache: pipe");
                std::exit(1);
            }
            const pid_t pid = ::fork();
            if (pid < 0) {
                std::perror("bench_host_cache: fork");
                std::exit(1);
            }
            if (pid == 0) {
                ::close(fd[0]);
                const double ms = way();
                const bool ok = ::write(fd[1], &ms, sizeof ms) == static_cast<ssize_t>(sizeof ms);
                ::_exit(ok ? 0 : 1);
            }
            ::close(fd[1]);
            double ms = -1;
            const bool got = ::read(fd[0], &ms, sizeof ms) == static_cast<ssize_t>(sizeof ms);
            ::close(fd[0]);
            int status = 0;
            ::waitpid(pid, &status, 0);
            if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                std::fprintf(stderr, "bench_host_cache: a repetition failed\n");
                std::exit(1);
            }
            t.push_back(ms);
        }
        return t;
    };
    // Floor: memcpy into memory touched beforehand.
    const std::vector<double> t_floor = in_child([&] {
        std::vector<float> dst(2 * layer_floats * static_cast<size_t>(L), 1.0f);  // touched
        const auto t0 = clk::now();
        for (int64_t l = 0; l < L; ++l) {
            float* to = dst.data() + 2 * layer_floats * static_cast<size_t>(l);
            std::memcpy(to, k.data(), layer_floats * sizeof(float));
            std::memcpy(to + layer_floats, v.data(), layer_floats * sizeof(float));
        }
        return ms_since(t0);
    });
    // The old storage: per head std::vector, rows inserted one by one after a reserve.
    const std::vector<double> t_vector = in_child([&] {
        std::vector<std::vector<float>> heads(static_cast<size_t>(2 * L * G));
        const auto t0 = clk::now();
        for (int64_t l = 0; l < L; ++l)
            for (int64_t g = 0; g < G; ++g)
                for (int part = 0; part < 2; ++part) {
                    auto& a = heads[static_cast<size_t>((l * G + g) * 2 + part)];
                    const float* src = (part == 0 ? k.data() : v.data()) + g * d;
                    a.reserve(static_cast<size_t>(n * d));
                    for (int64_t i = 0; i < n; ++i)
                        a.insert(a.end(), src + i * G * d, src + i * G * d + d);
                }
        return ms_since(t0);
    });
    // KVCache::append_layer, inline and on the pool (made in the child: threads do not survive
    // a fork).
    auto cache_way = [&](bool pooled) {
        return [&, pooled] {
            std::unique_ptr<cpu::ThreadPool> pool;
            KVCache::ParallelFor on_pool;
            if (pooled) {
                pool = std::make_unique<cpu::ThreadPool>(threads);
                on_pool = [&](int64_t tasks, const std::function<void(int64_t)>& task) {
                    pool->parallel_for(tasks, [&](int64_t b, int64_t e) {
                        for (int64_t t = b; t < e; ++t) task(t);
                    });
                };
            }
            KVCache cache(L, G, d, 2);
            const auto t0 = clk::now();
            cache.reserve(n);
            for (int64_t l = 0; l < L; ++l)
                cache.append_layer(l, k.data(), v.data(), pos.data(), n, nullptr, on_pool);
            const double ms = ms_since(t0);
            if (cache.k(L - 1, G - 1)[(n - 1) * d] != k[layer_floats - static_cast<size_t>(d)]) {
                std::fprintf(stderr, "bench_host_cache: the cache holds the wrong rows\n");
                std::exit(1);
            }
            return ms;
        };
    };
    const std::vector<double> t_layer = in_child(cache_way(false));
    const std::vector<double> t_pool = in_child(cache_way(true));

    const double floor_ms = median(t_floor);
    std::printf("%-8s %10s %9s %9s\n", "way", "ms", "GB/s", "x floor");
    for (const auto& [name, t] :
         {std::pair<const char*, const std::vector<double>&>{"floor", t_floor},
          {"vector", t_vector},
          {"layer", t_layer},
          {"pooled", t_pool}}) {
        const double ms = median(t);
        std::printf("%-8s %10.1f %9.2f %9.2f\n", name, ms, bytes / (ms / 1e3) / 1e9, ms / floor_ms);
    }
    return 0;
}
