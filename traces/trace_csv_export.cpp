// CSV export of a trace (see trace_csv_export.h).
#include "traces/trace_csv_export.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"

namespace kvscope::trace {

namespace {
constexpr int64_t kStepBlock = 1024;
constexpr int64_t kRowBlock = 1 << 18;

std::string fmt_float(float v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
    return buf;
}

// Valid UTF-8 passes through; a byte that starts no valid sequence becomes U+FFFD, so pandas
// can decode the file (pieces of byte-level tokens may split a character).
std::string sanitize_utf8(const std::string& s) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        size_t len = c < 0x80           ? 1
                     : (c >> 5) == 0x6  ? 2
                     : (c >> 4) == 0xE  ? 3
                     : (c >> 3) == 0x1E ? 4
                                        : 0;
        bool ok = len > 0 && i + len <= s.size();
        for (size_t k = 1; ok && k < len; ++k)
            ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 0x2;
        if (ok) {
            out.append(s, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char c : sanitize_utf8(s)) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

class CsvFile {
  public:
    CsvFile(const std::filesystem::path& path, const std::string& header) : path_(path) {
        out_.open(path, std::ios::binary | std::ios::trunc);
        if (!out_) throw InputError(path, "cannot write the CSV file");
        out_ << header << '\n';
    }
    std::ofstream& out() { return out_; }
    void close() {
        out_.close();
        if (!out_) throw InputError(path_, "writing the CSV file failed");
    }

  private:
    std::filesystem::path path_;
    std::ofstream out_;
};

void export_tokens(const TraceReader& r, const TraceInfo& info, CsvFile& f) {
    for (int64_t b = 0; b < info.n_tokens; b += kRowBlock) {
        int64_t e = std::min(info.n_tokens, b + kRowBlock);
        auto toks = r.tokens(b, e);
        for (size_t i = 0; i < toks.size(); ++i) {
            const auto& t = toks[i];
            f.out() << b + static_cast<int64_t>(i) << ',' << t.id << ','
                    << quote(t.role == TokenRole::kPrompt ? "prompt" : "generated") << ','
                    << t.text_offset << ',' << t.piece.size() << ',' << quote(t.piece) << '\n';
        }
    }
}

void export_prefill(const TraceReader& r, const TraceInfo& info, CsvFile& layers, CsvFile& heads,
                    CsvFile& tokens) {
    auto density = r.density(), spearman = r.spearman(), area = r.norm_attn_area();
    auto dl = r.density_layer();
    for (int32_t l = 0; l < info.n_layers; ++l) {
        layers.out() << l << ',' << (r.prefill_layer_done(l) ? 1 : 0) << ','
                     << fmt_float(dl[static_cast<size_t>(l)]) << '\n';
        for (int32_t h = 0; h < info.n_heads; ++h) {
            size_t k = static_cast<size_t>(l) * info.n_heads + h;
            heads.out() << l << ',' << h << ',' << fmt_float(density[k]) << ','
                        << fmt_float(spearman[k]) << ',' << fmt_float(area[k]) << '\n';
            auto kn = r.key_norm(l, h), ar = r.attn_received(l, h), ws = r.window_scores(l, h);
            for (size_t j = 0; j < kn.size(); ++j)
                tokens.out() << l << ',' << h << ',' << j << ',' << fmt_float(kn[j]) << ','
                             << fmt_float(ar[j]) << ',' << fmt_float(ws[j]) << '\n';
        }
    }
}

void export_steps(const TraceReader& r, const TraceInfo& info, CsvFile& steps, CsvFile& bytes,
                  CsvFile& budgets) {
    const int64_t P = info.n_prompt_tokens;
    for (int64_t b = 0; b < info.n_steps; b += kStepBlock) {
        int64_t e = std::min(info.n_steps, b + kStepBlock);
        auto recs = r.steps(b, e);
        int64_t te = std::min(info.n_tokens, P + e);
        auto toks = P + b < te ? r.tokens(P + b, te) : std::vector<TokenRecord>{};
        for (size_t i = 0; i < recs.size(); ++i) {
            const auto& s = recs[i];
            steps.out() << s.step << ',' << s.token_id << ','
                        << quote(i < toks.size() ? toks[i].piece : std::string()) << ','
                        << fmt_float(s.entropy) << ',' << fmt_float(s.time_ms) << ','
                        << s.event_begin << ',' << s.event_count;
            for (int32_t k = 0; k < info.top_k; ++k)
                steps.out() << ','
                            << (k < static_cast<int32_t>(s.topk_ids.size()) ? s.topk_ids[k] : -1);
            for (int32_t k = 0; k < info.top_k; ++k)
                steps.out() << ','
                            << (k < static_cast<int32_t>(s.topk_logprobs.size())
                                    ? fmt_float(s.topk_logprobs[k])
                                    : std::string("nan"));
            steps.out() << '\n';
            for (size_t l = 0; l < s.bytes_held.size(); ++l)
                bytes.out() << s.step << ',' << l << ',' << s.bytes_held[l] << '\n';
            auto bud = r.budgets(s.step);
            for (int32_t l = 0; l < info.n_layers; ++l)
                for (int32_t h = 0; h < info.n_heads; ++h)
                    budgets.out() << s.step << ',' << l << ',' << h << ','
                                  << bud[static_cast<size_t>(l) * info.n_heads + h] << '\n';
        }
    }
}

void export_events(const TraceReader& r, const TraceInfo& info, CsvFile& f) {
    for (int64_t b = 0; b < info.n_events; b += kRowBlock) {
        int64_t e = std::min(info.n_events, b + kRowBlock);
        auto ev = r.event_rows(b, e);
        for (size_t i = 0; i < ev.size(); ++i) {
            const auto& x = ev[i];
            f.out() << b + static_cast<int64_t>(i) << ',' << x.step << ',' << x.layer << ','
                    << x.head << ',' << quote(cache_op_name(x.op)) << ',' << x.position << ','
                    << x.destination << ',' << fmt_float(x.weight) << ',' << fmt_float(x.similarity)
                    << ',' << fmt_float(x.threshold) << ',' << static_cast<int>(x.bits) << ','
                    << x.slot << ',' << x.dst_position << ',' << static_cast<int>(x.part) << '\n';
        }
    }
}

void export_survival(const TraceReader& r, const TraceInfo& info, CsvFile& f) {
    const int64_t LH = static_cast<int64_t>(info.n_layers) * info.n_heads;
    for (int32_t span = 0; span < info.n_spans; ++span) {
        for (int64_t b = 0; b < info.n_steps; b += kStepBlock) {
            int64_t e = std::min(info.n_steps, b + kStepBlock);
            auto v = r.needle_survival(span, b, e);
            for (int64_t s = b; s < e; ++s)
                for (int64_t k = 0; k < LH; ++k)
                    f.out() << s << ',' << span << ',' << k / info.n_heads << ','
                            << k % info.n_heads << ','
                            << fmt_float(v[static_cast<size_t>((s - b) * LH + k)]) << '\n';
        }
    }
}

void export_rows(const TraceReader& r, const TraceInfo& info, CsvFile& f) {
    for (int64_t s = 0; s < info.n_steps; ++s)
        for (int32_t l = 0; l < info.n_layers; ++l)
            for (int32_t h = 0; h < info.n_heads; ++h) {
                auto row = r.attention_row(s, l, h);
                for (size_t i = 0; i < row.positions.size(); ++i)
                    f.out() << s << ',' << l << ',' << h << ',' << row.positions[i] << ','
                            << fmt_float(row.values[i]) << '\n';
            }
}
}  // namespace

// The pandas dtype of a column, by name: strings (always quoted in the CSV), floats (written as
// %.9g, "nan"/"inf" for non-finite) and, everything else, integers. Written to dtypes.json so
// that a reader need not guess: "NA" or "007" in a string column stays a string only when the
// column is read as one (pandas: dtype=str, keep_default_na=False for those columns).
std::string column_dtype(const std::string& col) {
    static const char* const kStrings[] = {"text", "role", "label", "expected_answer", "op"};
    static const char* const kFloats[] = {
        "density_layer", "density",      "spearman", "norm_attn_area", "key_norm",
        "attn_received", "window_score", "entropy",  "time_ms",        "weight",
        "similarity",    "threshold",    "survival", "value"};
    for (const char* s : kStrings)
        if (col == s) return "string";
    for (const char* f : kFloats)
        if (col == f) return "float64";
    if (col.rfind("topk_logprob_", 0) == 0) return "float64";
    return "int64";
}

std::vector<std::filesystem::path> export_csv(const TraceReader& r,
                                              const std::filesystem::path& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir))
        throw InputError(
            dir, "cannot create the export folder" + (ec ? ": " + ec.message() : std::string()));
    const TraceInfo info = r.info();
    std::vector<std::filesystem::path> written;
    nlohmann::json dtypes = nlohmann::json::object();
    auto file = [&](const char* name, const std::string& header) {
        written.push_back(dir / name);
        nlohmann::json& cols = dtypes[name];
        cols = nlohmann::json::object();
        size_t b = 0;
        while (b <= header.size()) {
            size_t e = header.find(',', b);
            if (e == std::string::npos) e = header.size();
            const std::string col = header.substr(b, e - b);
            cols[col] = column_dtype(col);
            b = e + 1;
        }
        return CsvFile(dir / name, header);
    };

    {
        nlohmann::json j;
        j["run"] = to_json(r.metadata());
        auto end = r.run_end();
        j["end"] = end ? to_json(*end) : nlohmann::json(nullptr);
        j["trace"] = {{"file", r.path().string()},
                      {"schema_version", info.schema_version},
                      {"state", static_cast<int>(info.state)},
                      {"n_steps", info.n_steps},
                      {"n_tokens", info.n_tokens},
                      {"n_events", info.n_events},
                      {"notice", info.notice}};
        written.push_back(dir / "metadata.json");
        std::ofstream out(written.back(), std::ios::binary | std::ios::trunc);
        out << j.dump(2) << '\n';
        if (!out) throw InputError(written.back(), "cannot write the file");
    }
    auto tokens = file("tokens.csv", "index,id,role,text_offset,text_length,text");
    export_tokens(r, info, tokens);
    tokens.close();

    auto spans = file("spans.csv", "span,begin,end,label,expected_answer,answer_found");
    auto found = r.answer_found();
    for (size_t i = 0; i < r.spans().size(); ++i) {
        const auto& s = r.spans()[i];
        spans.out() << i << ',' << s.begin << ',' << s.end << ',' << quote(s.label) << ','
                    << quote(s.expected_answer) << ',' << static_cast<int>(found[i]) << '\n';
    }
    spans.close();

    auto layers = file("prefill_layers.csv", "layer,done,density_layer");
    auto heads = file("prefill_heads.csv", "layer,head,density,spearman,norm_attn_area");
    auto ptoks =
        file("prefill_tokens.csv", "layer,head,position,key_norm,attn_received,window_score");
    export_prefill(r, info, layers, heads, ptoks);
    layers.close();
    heads.close();
    ptoks.close();

    std::string step_header = "step,token_id,text,entropy,time_ms,event_begin,event_count";
    for (int32_t k = 0; k < info.top_k; ++k) step_header += ",topk_id_" + std::to_string(k);
    for (int32_t k = 0; k < info.top_k; ++k) step_header += ",topk_logprob_" + std::to_string(k);
    auto steps = file("steps.csv", step_header);
    auto bytes = file("bytes_held.csv", "step,layer,bytes_held");
    auto budgets = file("budgets.csv", "step,layer,head,budget");
    export_steps(r, info, steps, bytes, budgets);
    steps.close();
    bytes.close();
    budgets.close();

    auto events = file("events.csv",
                       "row,step,layer,head,op,position,destination,weight,similarity,threshold,"
                       "bits,slot,dst_position,part");
    export_events(r, info, events);
    events.close();

    if (info.n_spans > 0) {
        auto surv = file("needle_survival.csv", "step,span,layer,head,survival");
        export_survival(r, info, surv);
        surv.close();
    }
    if (info.has_attention_rows) {
        auto rows = file("attention_rows.csv", "step,layer,head,position,value");
        export_rows(r, info, rows);
        rows.close();
    }
    {
        // The column types of every CSV written above (see column_dtype).
        written.push_back(dir / "dtypes.json");
        std::ofstream out(written.back(), std::ios::binary | std::ios::trunc);
        out << dtypes.dump(2) << '\n';
        if (!out) throw InputError(written.back(), "cannot write the file");
    }
    return written;
}

}  // namespace kvscope::trace
