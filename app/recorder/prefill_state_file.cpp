#include "app/recorder/prefill_state_file.h"

#include <limits>

#include <nlohmann/json.hpp>

#include "core/cache/kv_cache.h"
#include "core/engine/engine_cache_bridge.h"
#include "core/error.h"
#include "traces/hdf5_io.h"
#include "traces/trace_output.h"

namespace kvscope::record {
namespace {

namespace fs = std::filesystem;
namespace h5 = trace::h5;
using h5::Dims;

constexpr int32_t kVersion = 1;
constexpr int kLevel = 1;  // light deflate: K/V compress little, statistics a lot

size_t sz(int64_t v) {
    return static_cast<size_t>(v);
}

void write_f32(hid_t f, const std::string& name, const Dims& dims, const std::vector<float>& v) {
    Dims chunk = dims;
    chunk[0] = 1;  // one layer a chunk
    h5::Dataset ds =
        h5::create_dataset(f, name, h5::native_type<float>(), dims, chunk, false, kLevel, nullptr);
    Dims start(dims.size(), 0);
    h5::write_slab(ds, start, dims, v.data());
}

template <typename T>
std::vector<T> read_exact(const fs::path& path, hid_t f, const std::string& name,
                          const Dims& want) {
    h5::Dataset ds = h5::open_dataset(f, name, h5::native_type<T>());
    if (!ds.id.valid()) throw InputError(path, "missing dataset " + name + " (not a saved state?)");
    const Dims got = h5::extent(ds.id.get());
    if (got != want) {
        std::string g, w;
        for (auto x : got) g += (g.empty() ? "" : ",") + std::to_string(x);
        for (auto x : want) w += (w.empty() ? "" : ",") + std::to_string(x);
        throw InputError(path, name + " has shape [" + g + "], expected [" + w + "]");
    }
    hsize_t n = 1;
    for (auto x : want) n *= x;
    std::vector<T> out(static_cast<size_t>(n));
    h5::read_slab(ds.id.get(), h5::native_type<T>(), Dims(want.size(), 0), want, out.data());
    return out;
}

nlohmann::json spans_json(const std::vector<trace::MarkedSpan>& spans) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& s : spans)
        a.push_back({{"begin", s.begin},
                     {"end", s.end},
                     {"label", s.label},
                     {"expected_answer", s.expected_answer}});
    return a;
}

// /meta_json, bounded by the file's size before it is allocated.
nlohmann::json read_meta(const fs::path& path, hid_t f) {
    if (!h5::attr_exists(f, "kvstate_version"))
        throw InputError(path, "not a saved prompt state (no kvstate_version attribute)");
    const int64_t version = h5::read_attr_int(f, "kvstate_version");
    if (version != kVersion)
        throw InputError(path, "saved-state version " + std::to_string(version) +
                                   " is not supported (this build reads version 1)");
    h5::Dataset mj = h5::open_dataset(f, "/meta_json", h5::native_type<uint8_t>());
    if (!mj.id.valid()) throw InputError(path, "missing /meta_json");
    const Dims md = h5::extent(mj.id.get());
    if (md.size() != 1 || md[0] == 0 || md[0] > fs::file_size(path))
        throw InputError(path, "/meta_json has an impossible size");
    std::string text(static_cast<size_t>(md[0]), '\0');
    h5::read_slab(mj.id.get(), h5::native_type<uint8_t>(), {0}, md, text.data());
    nlohmann::json meta = nlohmann::json::parse(text, nullptr, false);
    if (meta.is_discarded() || !meta.is_object())
        throw InputError(path, "/meta_json is not valid JSON");
    return meta;
}

h5::Id open_state(const fs::path& path) {
    if (!fs::is_regular_file(path)) throw InputError(path, "no such file");
    h5::silence_errors();
    h5::Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!f.valid()) throw InputError(path, "not an HDF5 file (or damaged)");
    return f;
}

}  // namespace

std::string saved_state_model_path(const fs::path& path) {
    try {
        h5::Id f = open_state(path);
        const nlohmann::json meta = read_meta(path, f.get());
        return meta.value("model_path", std::string());
    } catch (const h5::Error& e) {
        throw InputError(path, std::string("damaged saved state: ") + e.what());
    }
}

void save_prefill_state(const fs::path& path, const PrefillState& st, const ModelSpec& sp,
                        const RunInput& input, const std::string& model_path, bool overwrite) {
    trace::refuse_existing_output(path, overwrite);
    const fs::path part = trace::recording_path_for(path);
    std::error_code ec;
    fs::remove(part, ec);  // a stale part of ours from an earlier failed save
    const int64_t L = sp.n_layers, H = sp.n_heads, G = sp.n_kv_heads, d = sp.head_dim;
    const int64_t P = st.prompt_len(), W = st.window_rows();
    try {
        h5::silence_errors();
        h5::Id f(H5Fcreate(part.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT));
        if (!f.valid()) throw InputError(part, "cannot create the file");
        h5::write_attr<int32_t>(f.get(), "kvstate_version", kVersion);
        nlohmann::json meta = {{"format", "kvscope-prefill-state"},
                               {"model_path", model_path},
                               {"n_layers", L},
                               {"n_heads", H},
                               {"n_kv_heads", G},
                               {"head_dim", d},
                               {"vocab_size", sp.vocab_size},
                               {"prompt_len", P},
                               {"window_rows", W},
                               {"computed",
                                {{"colsum", st.computed.colsum},
                                 {"key_norms", st.computed.key_norms},
                                 {"query_absmax", st.computed.query_absmax},
                                 {"window", st.computed.window}}},
                               {"prompt", input.prompt},
                               {"answer", input.answer},
                               {"spans", spans_json(input.spans)},
                               {"scenario", input.scenario}};
        const std::string text = meta.dump();
        h5::Dataset mj =
            h5::create_dataset(f.get(), "/meta_json", h5::native_type<uint8_t>(), {text.size()},
                               {std::max<size_t>(1, text.size())}, false, 0, nullptr);
        h5::write_slab(mj, {0}, {text.size()}, text.data());
        h5::Dataset ids = h5::create_dataset(f.get(), "/prompt_ids", h5::native_type<int32_t>(),
                                             {sz(P)}, {sz(P)}, false, 0, nullptr);
        h5::write_slab(ids, {0}, {sz(P)}, st.prompt_ids.data());
        write_f32(f.get(), "/last_logits", {st.last_logits.size()}, st.last_logits);
        std::vector<float> k(sz(L * G * P * d)), v(k.size());
        for (int64_t l = 0; l < L; ++l)
            for (int64_t g = 0; g < G; ++g) {
                if (st.cache->n_slots(l, g) != P)
                    throw std::logic_error("save_prefill_state: the cache is not a full prompt");
                std::copy_n(st.cache->k(l, g), P * d, k.begin() + (l * G + g) * P * d);
                std::copy_n(st.cache->v(l, g), P * d, v.begin() + (l * G + g) * P * d);
            }
        write_f32(f.get(), "/cache/k", {sz(L), sz(G), sz(P), sz(d)}, k);
        write_f32(f.get(), "/cache/v", {sz(L), sz(G), sz(P), sz(d)}, v);
        auto gather = [&](auto member, int64_t heads, int64_t per_head) {
            std::vector<float> out;
            out.reserve(sz(L * heads * per_head));
            for (const LayerPrefillStats& ps : st.stats)
                for (const auto& vec : ps.*member) out.insert(out.end(), vec.begin(), vec.end());
            if (out.size() != sz(L * heads * per_head))
                throw std::logic_error("save_prefill_state: statistics of unexpected size");
            return out;
        };
        if (st.computed.colsum)
            write_f32(f.get(), "/stats/colsum", {sz(L), sz(H), sz(P)},
                      gather(&LayerPrefillStats::colsum, H, P));
        if (W > 0)
            write_f32(f.get(), "/stats/window", {sz(L), sz(H), sz(W), sz(P)},
                      gather(&LayerPrefillStats::window, H, W * P));
        if (st.computed.key_norms)
            write_f32(f.get(), "/stats/key_norm", {sz(L), sz(G), sz(P)},
                      gather(&LayerPrefillStats::key_norm, G, P));
        if (st.computed.query_absmax)
            write_f32(f.get(), "/stats/query_absmax", {sz(L), sz(G), sz(d)},
                      gather(&LayerPrefillStats::query_absmax, G, d));
        h5::check_status(H5Fflush(f.get(), H5F_SCOPE_GLOBAL), "H5Fflush");
    } catch (const h5::Error& e) {
        fs::remove(part, ec);
        throw InputError(path, std::string("cannot write the saved state: ") + e.what());
    } catch (...) {
        fs::remove(part, ec);
        throw;
    }
    trace::move_into_place(part, path, overwrite);
}

SavedPrefill load_prefill_state(const fs::path& path, const ModelSpec& sp) {
    try {
        h5::Id f = open_state(path);
        const nlohmann::json meta = read_meta(path, f.get());
        auto num = [&](const char* key) -> int64_t {
            if (!meta.contains(key) || !meta[key].is_number_integer())
                throw InputError(path, std::string("/meta_json lacks '") + key + "'");
            return meta[key].get<int64_t>();
        };
        const int64_t L = sp.n_layers, H = sp.n_heads, G = sp.n_kv_heads, d = sp.head_dim;
        if (num("n_layers") != L || num("n_heads") != H || num("n_kv_heads") != G ||
            num("head_dim") != d || num("vocab_size") != sp.vocab_size)
            throw InputError(path, "was saved for a model of another shape (layers " +
                                       std::to_string(num("n_layers")) + ", heads " +
                                       std::to_string(num("n_heads")) + "/" +
                                       std::to_string(num("n_kv_heads")) + ", head_dim " +
                                       std::to_string(num("head_dim")) + ")");
        const int64_t P = num("prompt_len"), W = num("window_rows");
        if (P < 1 || P > (int64_t{1} << 22) || W < 0 || W > P)
            throw InputError(path, "impossible prompt length or window rows");
        // Every dataset together must fit in the file (they are at most mildly compressed): a
        // damaged header cannot make us allocate what the file does not hold.
        const double need = 4.0 * (2.0 * L * G * P * d) / 8.0;  // K/V at >= 8x compression
        if (need > static_cast<double>(fs::file_size(path)))
            throw InputError(path, "is too small for the K/V it claims (truncated?)");

        auto st = std::make_shared<PrefillState>();
        st->prompt_ids = read_exact<int32_t>(path, f.get(), "/prompt_ids", {sz(P)});
        for (int32_t id : st->prompt_ids)
            if (id < 0 || id >= sp.vocab_size)
                throw InputError(path, "a prompt token id is outside the vocabulary");
        st->last_logits = read_exact<float>(path, f.get(), "/last_logits", {sz(sp.vocab_size)});
        const auto k = read_exact<float>(path, f.get(), "/cache/k", {sz(L), sz(G), sz(P), sz(d)});
        const auto v = read_exact<float>(path, f.get(), "/cache/v", {sz(L), sz(G), sz(P), sz(d)});
        auto cache = make_engine_cache(sp);
        for (int64_t l = 0; l < L; ++l)
            for (int64_t g = 0; g < G; ++g)
                for (int64_t p = 0; p < P; ++p) {
                    const size_t off = sz(((l * G + g) * P + p) * d);
                    cache->append(l, g, k.data() + off, v.data() + off, p);
                }
        st->cache = std::move(cache);
        const nlohmann::json c = meta.value("computed", nlohmann::json::object());
        st->computed.colsum = c.value("colsum", false);
        st->computed.key_norms = c.value("key_norms", false);
        st->computed.query_absmax = c.value("query_absmax", false);
        st->computed.window = c.value("window", int64_t{0});
        st->stats.assign(sz(L), LayerPrefillStats{});
        auto scatter = [&](auto member, const std::vector<float>& all, int64_t heads,
                           int64_t per_head) {
            for (int64_t l = 0; l < L; ++l) {
                auto& dst = st->stats[sz(l)].*member;
                dst.assign(sz(heads), {});
                for (int64_t h = 0; h < heads; ++h) {
                    const auto b = all.begin() + (l * heads + h) * per_head;
                    dst[sz(h)].assign(b, b + per_head);
                }
            }
        };
        if (st->computed.colsum)
            scatter(&LayerPrefillStats::colsum,
                    read_exact<float>(path, f.get(), "/stats/colsum", {sz(L), sz(H), sz(P)}), H, P);
        if (W > 0) {
            scatter(&LayerPrefillStats::window,
                    read_exact<float>(path, f.get(), "/stats/window", {sz(L), sz(H), sz(W), sz(P)}),
                    H, W * P);
            for (auto& ps : st->stats) ps.window_rows = W;
        }
        if (st->computed.key_norms)
            scatter(&LayerPrefillStats::key_norm,
                    read_exact<float>(path, f.get(), "/stats/key_norm", {sz(L), sz(G), sz(P)}), G,
                    P);
        if (st->computed.query_absmax)
            scatter(&LayerPrefillStats::query_absmax,
                    read_exact<float>(path, f.get(), "/stats/query_absmax", {sz(L), sz(G), sz(d)}),
                    G, d);

        SavedPrefill out;
        out.state = std::move(st);
        out.model_path = meta.value("model_path", std::string());
        out.input.prompt = meta.value("prompt", std::string());
        out.input.answer = meta.value("answer", std::string());
        out.input.ids = out.state->prompt_ids;
        if (meta.contains("scenario")) out.input.scenario = meta["scenario"];
        for (const auto& s : meta.value("spans", nlohmann::json::array())) {
            trace::MarkedSpan m;
            m.begin = s.value("begin", int64_t{-1});
            m.end = s.value("end", int64_t{-1});
            m.label = s.value("label", std::string());
            m.expected_answer = s.value("expected_answer", std::string());
            if (m.begin < 0 || m.end <= m.begin || m.end > P)
                throw InputError(path, "a needle span lies outside the prompt");
            out.input.spans.push_back(m);
        }
        return out;
    } catch (const h5::Error& e) {
        throw InputError(path, std::string("damaged saved state: ") + e.what());
    } catch (const nlohmann::json::exception& e) {
        throw InputError(path, std::string("bad /meta_json: ") + e.what());
    }
}

}  // namespace kvscope::record
