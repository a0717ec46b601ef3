// Shared pieces of the tokenizer.json reader: error locations, typed field reads, the GPT-2
// byte-level alphabet and <0xNN> byte tokens.
#include <array>

#include "core/error.h"
#include "core/tokenizer/hf_pipeline.h"
#include "core/tokenizer/utf8.h"

namespace kvscope::hf {

using nlohmann::json;

JsonWhere JsonWhere::at(const std::string& key) const {
    return {file, path.empty() ? key : path + "." + key};
}

JsonWhere JsonWhere::at(size_t index) const {
    return {file, path + "[" + std::to_string(index) + "]"};
}

void JsonWhere::fail(const std::string& problem) const {
    throw InputError(file, path.empty() ? problem : path + ": " + problem);
}

std::string json_type_of(const json& j) {
    switch (j.type()) {
        case json::value_t::null:
            return "null";
        case json::value_t::object:
            return "an object";
        case json::value_t::array:
            return "an array";
        case json::value_t::string:
            return "a string";
        case json::value_t::boolean:
            return "a boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
            return "an integer";
        case json::value_t::number_float:
            return "a number";
        default:
            return "an unexpected JSON value";
    }
}

const json& require(const json& obj, const std::string& key, const JsonWhere& where) {
    if (!obj.is_object()) where.fail("expected an object, got " + json_type_of(obj));
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) where.fail("missing field '" + key + "'");
    return *it;
}

namespace {

const json* field(const json& obj, const std::string& key, const JsonWhere& where) {
    if (!obj.is_object()) where.fail("expected an object, got " + json_type_of(obj));
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

std::string get_string(const json& obj, const std::string& key, const JsonWhere& where,
                       const std::string& fallback) {
    const json* v = field(obj, key, where);
    if (!v) return fallback;
    if (!v->is_string()) where.at(key).fail("expected a string, got " + json_type_of(*v));
    return v->get<std::string>();
}

bool get_bool(const json& obj, const std::string& key, const JsonWhere& where, bool fallback) {
    const json* v = field(obj, key, where);
    if (!v) return fallback;
    if (!v->is_boolean()) where.at(key).fail("expected true or false, got " + json_type_of(*v));
    return v->get<bool>();
}

int64_t get_int(const json& obj, const std::string& key, const JsonWhere& where, int64_t fallback) {
    const json* v = field(obj, key, where);
    if (!v) return fallback;
    if (v->is_number_unsigned()) {
        const auto u = v->get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) where.at(key).fail("integer out of range");
        return static_cast<int64_t>(u);
    }
    if (!v->is_number_integer()) where.at(key).fail("expected an integer, got " + json_type_of(*v));
    return v->get<int64_t>();
}

std::string get_char(const json& obj, const std::string& key, const JsonWhere& where,
                     const std::string& fallback) {
    std::string s = get_string(obj, key, where, fallback);
    const bool one_char = !s.empty() && utf8::next(s, 0).valid && utf8::next(s, 0).len == s.size();
    if (!one_char) where.at(key).fail("expected a single character, got '" + s + "'");
    return s;
}

namespace {

// GPT-2's printable stand-ins: printable Latin-1 bytes stand for themselves, the other 68 bytes
// map in order to U+0100 and up.
struct ByteAlphabet {
    std::array<char32_t, 256> to_char{};
    std::array<int, 324> to_byte{};  // indexed by code point (all stand-ins are < U+0144)
    ByteAlphabet() {
        to_byte.fill(-1);
        char32_t extra = 0x100;
        for (int b = 0; b < 256; ++b) {
            const bool printable =
                (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            to_char[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : extra++;
            to_byte[to_char[static_cast<size_t>(b)]] = b;
        }
    }
};

const ByteAlphabet& alphabet() {
    static const ByteAlphabet a;
    return a;
}

}  // namespace

char32_t byte_to_char(uint8_t b) {
    return alphabet().to_char[b];
}

int char_to_byte(char32_t c) {
    return c < alphabet().to_byte.size() ? alphabet().to_byte[c] : -1;
}

int parse_byte_token(const std::string& t) {
    if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace kvscope::hf
