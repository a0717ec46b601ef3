#include "core/model/json_fields.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "core/error.h"

namespace kvscope {

namespace fs = std::filesystem;
using nlohmann::json;

nlohmann::json parse_json_text(const char* begin, const char* end, const fs::path& file) {
    try {
        return json::parse(begin, end);
    } catch (const json::exception& e) {
        // nlohmann's message starts with "[json.exception.parse_error.101] "; keep what follows.
        std::string msg = e.what();
        const auto close = msg.find("] ");
        if (msg.rfind("[json.exception.", 0) == 0 && close != std::string::npos)
            msg = msg.substr(close + 2);
        throw InputError(file, "not valid JSON: " + msg);
    }
}

nlohmann::json read_json_file(const fs::path& file, bool want_object) {
    std::error_code ec;
    if (!fs::exists(file, ec)) throw InputError(file, "file not found");
    if (fs::is_directory(file, ec)) throw InputError(file, "is a directory, expected a JSON file");
    std::ifstream in(file, std::ios::binary);
    if (!in) throw InputError(file, "cannot open for reading");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw InputError(file, "read error");
    const std::string text = ss.str();
    json j = parse_json_text(text.data(), text.data() + text.size(), file);
    if (want_object && !j.is_object())
        throw InputError(file, "expected a JSON object at the top level, got " + json_type_name(j));
    return j;
}

std::string format_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

std::string json_type_name(const json& v) {
    switch (v.type()) {
        case json::value_t::null:
            return "null";
        case json::value_t::object:
            return "object";
        case json::value_t::array:
            return "array";
        case json::value_t::string:
            return "string";
        case json::value_t::boolean:
            return "boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
            return "integer";
        case json::value_t::number_float:
            return "number";
        case json::value_t::binary:
            return "binary";
        case json::value_t::discarded:
            return "invalid";
    }
    return "unknown";
}

namespace {

const json* field(const json& obj, const std::string& key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

std::string name_of(const std::string& key, const std::string& path) {
    return "'" + (path.empty() ? key : path) + "'";
}

std::string describe(const json& v) {
    std::string s = json_type_name(v);
    if (v.is_string()) {
        std::string text = v.get<std::string>();
        if (text.size() > 40) text = text.substr(0, 40) + "...";
        s += " \"" + text + "\"";
    }
    return s;
}

}  // namespace

int64_t json_value_int(const json& v, const fs::path& file, const std::string& what) {
    if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX))
            throw InputError(file, what + " is too large: " + std::to_string(u));
        return static_cast<int64_t>(u);
    }
    if (v.is_number_float()) {
        const double d = v.get<double>();
        // 2^62 keeps the conversion exact-range safe; no model dimension comes near it.
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 4.6e18)
            return static_cast<int64_t>(d);
        throw InputError(file, what + " must be an integer, got " + v.dump());
    }
    throw InputError(file, what + " must be an integer, got " + describe(v));
}

std::optional<int64_t> json_int(const json& obj, const std::string& key, const fs::path& file,
                                const std::string& path) {
    const json* v = field(obj, key);
    if (!v) return std::nullopt;
    return json_value_int(*v, file, "field " + name_of(key, path));
}

std::optional<double> json_number(const json& obj, const std::string& key, const fs::path& file,
                                  const std::string& path) {
    const json* v = field(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_number())
        throw InputError(file,
                         "field " + name_of(key, path) + " must be a number, got " + describe(*v));
    const double d = v->get<double>();
    if (!std::isfinite(d))
        throw InputError(file, "field " + name_of(key, path) + " must be a finite number");
    return d;
}

std::optional<bool> json_bool(const json& obj, const std::string& key, const fs::path& file,
                              const std::string& path) {
    const json* v = field(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean())
        throw InputError(
            file, "field " + name_of(key, path) + " must be true or false, got " + describe(*v));
    return v->get<bool>();
}

std::optional<std::string> json_string(const json& obj, const std::string& key,
                                       const fs::path& file, const std::string& path) {
    const json* v = field(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_string())
        throw InputError(file,
                         "field " + name_of(key, path) + " must be a string, got " + describe(*v));
    return v->get<std::string>();
}

int64_t json_require_int(const json& obj, const std::string& key, const fs::path& file,
                         const std::string& path) {
    auto v = json_int(obj, key, file, path);
    if (!v) throw InputError(file, "missing required field " + name_of(key, path));
    return *v;
}

}  // namespace kvscope
