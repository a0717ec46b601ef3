#include "tests/policies/policy_harness.h"

#include <algorithm>
#include <cmath>

#include "core/policies/registry.h"

namespace kvscope::test {

namespace {

template <class T>
std::span<const T> span_or_empty(const std::vector<T>& v) {
    return v.empty() ? std::span<const T>() : std::span<const T>(v);
}

std::vector<std::span<const float>> spans(const std::vector<std::vector<float>>& v) {
    std::vector<std::span<const float>> out;
    out.reserve(v.size());
    for (const auto& x : v) out.emplace_back(x);
    return out;
}

}  // namespace

OwnedStats::OwnedStats(int64_t layers, int64_t heads, int64_t kv_heads, int64_t n,
                       int64_t window_rows)
    : L(layers), H(heads), Hkv(kv_heads), N(n), w(window_rows) {
    colsum.assign(L, std::vector<std::vector<float>>(H, std::vector<float>(N, 0.0f)));
    window.assign(L, std::vector<std::vector<float>>(H, std::vector<float>(w * N, 0.0f)));
    key_norm.assign(L, std::vector<std::vector<float>>(Hkv, std::vector<float>(N, 1.0f)));
    positions = iota_positions(N);
}

void OwnedStats::randomize(uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int64_t l = 0; l < L; ++l)
        for (int64_t h = 0; h < H; ++h) {
            std::fill(colsum[l][h].begin(), colsum[l][h].end(), 0.0f);
            for (int64_t i = 0; i < N; ++i) {
                std::vector<float> row(N, 0.0f);
                float s = 0;
                for (int64_t j = 0; j <= i; ++j) s += row[j] = u(rng) * u(rng);
                for (int64_t j = 0; j <= i; ++j) {
                    row[j] /= s;
                    colsum[l][h][j] += row[j];
                }
                if (i >= N - w)
                    std::copy(row.begin(), row.end(), window[l][h].begin() + (i - (N - w)) * N);
            }
        }
    for (auto& layer : key_norm)
        for (auto& head : layer)
            for (float& x : head) x = 0.5f + u(rng);
}

ScoreView OwnedStats::view(bool with_colsum, bool with_window, bool with_norms) const {
    ScoreView v = empty_view(dims(), N, -1);
    const int64_t g = H / Hkv;
    for (int64_t l = 0; l < L; ++l) {
        LayerScores ls;
        ls.layer = l;
        for (int64_t kv = 0; kv < Hkv; ++kv) {
            HeadScores hs;
            hs.layer = l;
            hs.kv_head = kv;
            hs.positions = positions;
            for (int64_t q = 0; q < g; ++q) {
                if (with_colsum) hs.colsum.push_back(colsum[l][kv * g + q]);
                if (with_window && w > 0) hs.window.push_back(window[l][kv * g + q]);
            }
            hs.window_rows = with_window ? w : 0;
            if (with_norms) hs.key_norms = key_norm[l][kv];
            ls.heads.push_back(std::move(hs));
        }
        v.layers.push_back(std::move(ls));
    }
    return v;
}

ScoreView empty_view(const ModelDims& dims, int64_t prompt_len, int64_t step) {
    ScoreView v;
    v.n_layers = dims.n_layers;
    v.n_heads = dims.n_heads;
    v.n_kv_heads = dims.n_kv_heads;
    v.head_dim = dims.head_dim;
    v.prompt_len = prompt_len;
    v.step = step;
    return v;
}

std::unique_ptr<Policy> make_with_tokens(const std::string& name, int64_t tokens,
                                         const std::vector<std::string>& params) {
    Budget b;
    b.tokens = tokens;
    return make_policy(name, b, params);
}

std::vector<int64_t> kept_of(const Plan& p, int64_t layer, int64_t head, int64_t n) {
    const HeadPlan* hp = p.find(layer, head);
    if (hp && hp->keep) return *hp->keep;
    return iota_positions(n);
}

const LayerNote* find_note(const Plan& p, int64_t layer, const std::string& key) {
    for (const LayerNote& n : p.notes)
        if (n.layer == layer && n.key == key) return &n;
    return nullptr;
}

std::vector<int> bits_of(std::span<const int> b) {
    return {b.begin(), b.end()};
}

ScoreView ViewData::view() const {
    ScoreView v = empty_view(dims_of(*this), prompt_len, step);
    for (size_t e = 0; e < heads.size(); ++e) {
        LayerScores ls;
        ls.layer = layer_ids[e];
        for (size_t h = 0; h < heads[e].size(); ++h) {
            const HeadData& d = heads[e][h];
            HeadScores hs;
            hs.layer = ls.layer;
            hs.kv_head = static_cast<int64_t>(h);
            hs.positions = d.pos;
            hs.colsum = spans(d.colsum);
            hs.window = spans(d.window);
            hs.window_rows = d.window_rows;
            hs.step_row = spans(d.step_row);
            hs.keys = span_or_empty(d.keys);
            hs.keys_prerope = span_or_empty(d.keys_prerope);
            hs.control = span_or_empty(d.control);
            hs.query_absmax = span_or_empty(d.query_absmax);
            ls.heads.push_back(std::move(hs));
        }
        v.layers.push_back(std::move(ls));
    }
    return v;
}

ModelDims dims_of(const ViewData& v) {
    return ModelDims{v.n_layers, v.n_heads, v.n_kv_heads, v.head_dim};
}

std::vector<int64_t> iota_positions(int64_t n) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
    return p;
}

std::vector<int64_t> positions_of(const KVCache& c, int64_t layer, int64_t head) {
    const auto p = c.positions(layer, head);
    return {p.begin(), p.end()};
}

int64_t expected_bytes_per_token_quant(const KVCache& c, int64_t group) {
    const int64_t d = c.head_dim();
    int64_t total = 0;
    for (int64_t l = 0; l < c.n_layers(); ++l) {
        for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
            int64_t bits = 0;
            auto part = [&](int b) {
                if (b == 16) return d * c.element_bytes() * 8;
                return d * b + ((d + group - 1) / group) * 32;
            };
            const auto kb = c.k_bits(l, h), vb = c.v_bits(l, h);
            for (size_t i = 0; i < kb.size(); ++i) bits += part(kb[i]) + part(vb[i]);
            total += (bits + 7) / 8;
        }
    }
    return total;
}

SyntheticRun::SyntheticRun(const ModelDims& dims, int64_t prompt_len, uint32_t seed, Policy& policy)
    : dims_(dims), prompt_len_(prompt_len), rng_(seed), policy_(policy) {
    cache_ = std::make_unique<KVCache>(dims.n_layers, dims.n_kv_heads, dims.head_dim, 2);
    cache_->set_store_prerope(policy.needs().prerope_keys);
    cache_->set_rotate([](float*, int64_t) {});  // identity: pre-RoPE == post-RoPE here
}

std::vector<float> SyntheticRun::rand_vec(int64_t n, float scale) {
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = nd(rng_);
    return v;
}

std::vector<float> SyntheticRun::rand_positive(int64_t n) {
    std::exponential_distribution<float> ed(1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = ed(rng_);
    return v;
}

void SyntheticRun::prefill() {
    const PolicyNeeds nd = policy_.needs();
    const int64_t L = dims_.n_layers, G = dims_.n_kv_heads, d = dims_.head_dim, g = dims_.group();
    const int64_t N = prompt_len_;
    policy_.begin(dims_, N);
    cache_->clear();
    cache_->set_step(-1);
    std::normal_distribution<float> kraw(5.0f, 2.0f), qraw(-3.0f, 1.0f);
    ViewData vd;
    vd.n_layers = L;
    vd.n_heads = dims_.n_heads;
    vd.n_kv_heads = G;
    vd.head_dim = d;
    vd.prompt_len = N;
    for (int64_t l = 0; l < L; ++l) {
        vd.layer_ids.push_back(l);
        vd.heads.emplace_back();
        for (int64_t h = 0; h < G; ++h) {
            for (int64_t t = 0; t < N; ++t) {
                const std::vector<float> k = rand_vec(d, 1.0f), v = rand_vec(d, 1.0f);
                cache_->append(l, h, k.data(), v.data(), t, k.data());
            }
            HeadData hd;
            hd.pos = iota_positions(N);
            if (nd.colsum)
                for (int64_t q = 0; q < g; ++q) hd.colsum.push_back(rand_positive(N));
            const int64_t w =
                std::min<int64_t>(std::max<int64_t>(nd.window, nd.last_row ? 1 : 0), N);
            if (w > 0) {
                hd.window_rows = w;
                for (int64_t q = 0; q < g; ++q) {
                    std::vector<float> rows(static_cast<size_t>(w * N), 0.0f);
                    for (int64_t i = 0; i < w; ++i) {
                        const int64_t visible = N - w + i + 1;
                        std::vector<float> r = rand_positive(visible);
                        double s = 0.0;
                        for (float x : r) s += x;
                        for (int64_t j = 0; j < visible; ++j)
                            rows[static_cast<size_t>(i * N + j)] =
                                static_cast<float>(r[static_cast<size_t>(j)] / s);
                    }
                    hd.window.push_back(std::move(rows));
                }
            }
            if (nd.keys) hd.keys.assign(cache_->k(l, h), cache_->k(l, h) + N * d);
            if (nd.prerope_keys)
                hd.keys_prerope.assign(cache_->k_prerope(l, h), cache_->k_prerope(l, h) + N * d);
            if (nd.control_neuron) {
                for (int64_t t = 0; t < N; ++t) {
                    hd.control.push_back(kraw(rng_));
                    for (int64_t q = 0; q < g; ++q) hd.control.push_back(qraw(rng_));
                }
            }
            if (nd.query_absmax) {
                hd.query_absmax = rand_positive(d);
            }
            vd.heads.back().push_back(std::move(hd));
        }
    }
    const Plan plan = policy_.after_prefill(vd.view());
    apply(plan, *cache_);
    plans_.push_back(plan);
    pos_ = N;
    step_ = 0;
}

void SyntheticRun::decode_step() {
    const PolicyNeeds nd = policy_.needs();
    const int64_t L = dims_.n_layers, G = dims_.n_kv_heads, d = dims_.head_dim, g = dims_.group();
    std::normal_distribution<float> kraw(5.0f, 2.0f), qraw(-3.0f, 1.0f);
    cache_->set_step(step_);
    for (int64_t l = 0; l < L; ++l) {
        for (int64_t h = 0; h < G; ++h) {
            const std::vector<float> k = rand_vec(d, 1.0f), v = rand_vec(d, 1.0f);
            std::vector<float> control;
            if (nd.control_neuron) {
                control.push_back(kraw(rng_));
                for (int64_t q = 0; q < g; ++q) control.push_back(qraw(rng_));
            }
            AppendContext ctx;
            ctx.layer = l;
            ctx.kv_head = h;
            ctx.pos = pos_;
            ctx.step = step_;
            ctx.k = k;
            ctx.v = v;
            ctx.k_prerope = k;
            ctx.control = span_or_empty(control);
            ctx.cache = cache_.get();
            const AppendDecision dec = policy_.on_append(ctx);
            apply_append(dec, *cache_, l, h, k.data(), v.data(), pos_,
                         cache_->store_prerope() ? k.data() : nullptr);
        }
        ViewData vd;
        vd.n_layers = L;
        vd.n_heads = dims_.n_heads;
        vd.n_kv_heads = G;
        vd.head_dim = d;
        vd.prompt_len = prompt_len_;
        vd.step = step_;
        vd.layer_ids.push_back(l);
        vd.heads.emplace_back();
        for (int64_t h = 0; h < G; ++h) {
            HeadData hd;
            hd.pos = positions_of(*cache_, l, h);
            const int64_t n = static_cast<int64_t>(hd.pos.size());
            if (nd.step_rows) {
                for (int64_t q = 0; q < g; ++q) {
                    std::vector<float> r = rand_positive(n);
                    double s = 0.0;
                    for (float x : r) s += x;
                    for (float& x : r) x = static_cast<float>(x / s);
                    hd.step_row.push_back(std::move(r));
                }
            }
            if (nd.keys) hd.keys.assign(cache_->k(l, h), cache_->k(l, h) + n * d);
            if (nd.prerope_keys)
                hd.keys_prerope.assign(cache_->k_prerope(l, h), cache_->k_prerope(l, h) + n * d);
            vd.heads.back().push_back(std::move(hd));
        }
        const Plan plan = policy_.after_decode_layer(vd.view());
        apply(plan, *cache_);
        plans_.push_back(plan);
    }
    ++pos_;
    ++step_;
}

}  // namespace kvscope::test
