#include "core/policies/param_schema.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/error.h"

namespace kvscope {

const char* param_type_name(ParamType t) {
    switch (t) {
        case ParamType::kInt:
            return "int";
        case ParamType::kFloat:
            return "float";
        case ParamType::kBool:
            return "bool";
        case ParamType::kEnum:
            return "enum";
        case ParamType::kIntList:
            return "int-list";
    }
    return "?";
}

namespace {

std::string fmt_double(double x) {
    // Whole numbers in full (a range's 16777216, not 1.67772e+07).
    if (std::isfinite(x) && std::abs(x) < 1e15 && x == std::floor(x))
        return std::to_string(static_cast<int64_t>(x));
    std::ostringstream os;
    os << x;
    return os.str();
}

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
    return out;
}

[[noreturn]] void bad(const std::string& policy, const std::string& param,
                      const std::string& what) {
    throw InputError("policy '" + policy + "', parameter '" + param + "': " + what);
}

std::string range_text(const ParamSpec& spec) {
    if (spec.min && spec.max)
        return " in [" + fmt_double(*spec.min) + ", " + fmt_double(*spec.max) + "]";
    if (spec.min) return " >= " + fmt_double(*spec.min);
    if (spec.max) return " <= " + fmt_double(*spec.max);
    return "";
}

bool parse_int(const std::string& s, int64_t& out) {
    const char* b = s.data();
    const char* e = s.data() + s.size();
    if (b != e && *b == '+') ++b;
    auto r = std::from_chars(b, e, out);
    return r.ec == std::errc() && r.ptr == e && b != e;
}

bool parse_float(const std::string& s, double& out) {
    if (s.empty()) return false;
    try {
        size_t used = 0;
        out = std::stod(s, &used);
        return used == s.size() && std::isfinite(out);
    } catch (const std::exception&) {
        return false;
    }
}

std::string trim(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

}  // namespace

std::string param_value_to_string(const ParamValue& v) {
    if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
    if (const auto* d = std::get_if<double>(&v)) return fmt_double(*d);
    if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    const auto& l = std::get<std::vector<int64_t>>(v);
    std::string out;
    for (size_t i = 0; i < l.size(); ++i) out += (i ? "," : "") + std::to_string(l[i]);
    return out;
}

namespace {
template <class T>
const T& get_typed(const std::map<std::string, ParamValue>& m, const std::string& name,
                   const char* type) {
    auto it = m.find(name);
    if (it == m.end()) throw std::invalid_argument("parameter '" + name + "' is not set");
    const T* p = std::get_if<T>(&it->second);
    if (!p) throw std::invalid_argument("parameter '" + name + "' is not of type " + type);
    return *p;
}
}  // namespace

int64_t ParamValues::get_int(const std::string& name) const {
    return get_typed<int64_t>(values_, name, "int");
}
double ParamValues::get_float(const std::string& name) const {
    return get_typed<double>(values_, name, "float");
}
bool ParamValues::get_bool(const std::string& name) const {
    return get_typed<bool>(values_, name, "bool");
}
const std::string& ParamValues::get_enum(const std::string& name) const {
    return get_typed<std::string>(values_, name, "enum");
}
const std::vector<int64_t>& ParamValues::get_int_list(const std::string& name) const {
    return get_typed<std::vector<int64_t>>(values_, name, "int-list");
}

void apply_default_bounds(ParamSpec& spec) {
    double limit = 0;
    if (spec.type == ParamType::kInt || spec.type == ParamType::kIntList)
        limit = kParamIntLimit;
    else if (spec.type == ParamType::kFloat)
        limit = kParamFloatLimit;
    else
        return;
    if (!spec.min) spec.min = -limit;
    if (!spec.max) spec.max = limit;
}

ParamValues default_params(const ParamSchema& schema) {
    ParamValues v;
    for (const ParamSpec& s : schema) v.set(s.name, s.default_value);
    return v;
}

void validate_param(const std::string& policy, const ParamSpec& spec, const ParamValue& v) {
    auto check_range = [&](double x, const std::string& shown) {
        if ((spec.min && x < *spec.min) || (spec.max && x > *spec.max))
            bad(policy, spec.name,
                "value " + shown + " is out of range (expected " + param_type_name(spec.type) +
                    range_text(spec) + ")");
    };
    switch (spec.type) {
        case ParamType::kInt: {
            const auto* i = std::get_if<int64_t>(&v);
            if (!i) bad(policy, spec.name, "expected an integer");
            check_range(static_cast<double>(*i), std::to_string(*i));
            break;
        }
        case ParamType::kFloat: {
            const auto* d = std::get_if<double>(&v);
            if (!d) bad(policy, spec.name, "expected a number");
            if (!std::isfinite(*d)) bad(policy, spec.name, "expected a finite number");
            check_range(*d, fmt_double(*d));
            break;
        }
        case ParamType::kBool:
            if (!std::holds_alternative<bool>(v)) bad(policy, spec.name, "expected true or false");
            break;
        case ParamType::kEnum: {
            const auto* s = std::get_if<std::string>(&v);
            if (!s || std::find(spec.choices.begin(), spec.choices.end(), *s) == spec.choices.end())
                bad(policy, spec.name,
                    "'" + (s ? *s : std::string("?")) +
                        "' is not one of: " + join(spec.choices, ", "));
            break;
        }
        case ParamType::kIntList: {
            const auto* l = std::get_if<std::vector<int64_t>>(&v);
            if (!l) bad(policy, spec.name, "expected a comma-separated list of integers");
            for (int64_t x : *l) check_range(static_cast<double>(x), std::to_string(x));
            break;
        }
    }
}

ParamValue parse_param_value(const std::string& policy, const ParamSpec& spec,
                             const std::string& text_in) {
    const std::string text = trim(text_in);
    ParamValue v;
    switch (spec.type) {
        case ParamType::kInt: {
            int64_t i = 0;
            if (!parse_int(text, i))
                bad(policy, spec.name,
                    "'" + text + "' is not an integer (expected int" + range_text(spec) + ")");
            v = i;
            break;
        }
        case ParamType::kFloat: {
            double d = 0;
            if (!parse_float(text, d))
                bad(policy, spec.name,
                    "'" + text + "' is not a number (expected float" + range_text(spec) + ")");
            v = d;
            break;
        }
        case ParamType::kBool: {
            std::string t = text;
            std::transform(t.begin(), t.end(), t.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            if (t == "true" || t == "1" || t == "yes" || t == "on")
                v = true;
            else if (t == "false" || t == "0" || t == "no" || t == "off")
                v = false;
            else
                bad(policy, spec.name, "'" + text + "' is not a boolean (expected true or false)");
            break;
        }
        case ParamType::kEnum:
            v = text;
            break;
        case ParamType::kIntList: {
            std::vector<int64_t> out;
            if (!text.empty()) {
                std::stringstream ss(text);
                std::string item;
                while (std::getline(ss, item, ',')) {
                    int64_t i = 0;
                    if (!parse_int(trim(item), i))
                        bad(policy, spec.name,
                            "'" + text + "' is not a comma-separated list of integers");
                    out.push_back(i);
                }
                if (text.back() == ',') bad(policy, spec.name, "'" + text + "' ends with a comma");
            }
            v = out;
            break;
        }
    }
    validate_param(policy, spec, v);
    return v;
}

ParamValues parse_param_assignments(const std::string& policy, const ParamSchema& schema,
                                    const std::vector<std::string>& assignments) {
    ParamValues out = default_params(schema);
    std::set<std::string> seen;
    for (const std::string& a : assignments) {
        const size_t eq = a.find('=');
        if (eq == std::string::npos || eq == 0)
            throw InputError("policy '" + policy + "': --param '" + a +
                             "' is not of the form key=value");
        const std::string key = trim(a.substr(0, eq));
        const ParamSpec* spec = nullptr;
        for (const ParamSpec& s : schema)
            if (s.name == key) spec = &s;
        if (!spec) {
            std::vector<std::string> names;
            for (const ParamSpec& s : schema) names.push_back(s.name);
            throw InputError("policy '" + policy + "' has no parameter '" + key + "'" +
                             (names.empty() ? std::string(" (it takes none)")
                                            : " (known: " + join(names, ", ") + ")"));
        }
        if (!seen.insert(key).second)
            throw InputError("policy '" + policy + "', parameter '" + key + "' is given twice");
        out.set(key, parse_param_value(policy, *spec, a.substr(eq + 1)));
    }
    return out;
}

ParamValues complete_params(const std::string& policy, const ParamSchema& schema,
                            const ParamValues& given) {
    ParamValues out = default_params(schema);
    for (const auto& [name, value] : given.all()) {
        const ParamSpec* spec = nullptr;
        for (const ParamSpec& s : schema)
            if (s.name == name) spec = &s;
        if (!spec) throw InputError("policy '" + policy + "' has no parameter '" + name + "'");
        validate_param(policy, *spec, value);
        out.set(name, value);
    }
    return out;
}

}  // namespace kvscope
