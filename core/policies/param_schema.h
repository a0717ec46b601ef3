#pragma once
// STATUS: stable (additions only from here on)
// A policy's parameters, declared as data: the CLI (`--param key=value`, `kvscope policies`) and
// the Studio widgets are generated from the schema.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kvscope {

enum class ParamType : uint8_t { kInt, kFloat, kBool, kEnum, kIntList };

const char* param_type_name(ParamType t);

// int_ -> int64_t, float_ -> double, bool_ -> bool, enum_ -> std::string, int_list -> vector.
using ParamValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>>;

std::string param_value_to_string(const ParamValue& v);

struct ParamSpec {
    std::string name;  // [a-z0-9_]+
    ParamType type = ParamType::kInt;
    ParamValue default_value;
    std::optional<double> min;  // int_/float_: inclusive range; int_list: per element
    std::optional<double> max;
    std::vector<std::string> choices;  // enum_
    std::string help;
};

using ParamSchema = std::vector<ParamSpec>;

// Every numeric parameter gets a finite range: a spec declared without a min or max is given
// these (PolicyRegistry::add applies them), so that `--param window=99999999999` is refused with
// the allowed range instead of being taken. 2^24 tokens is far past any context length.
inline constexpr double kParamIntLimit = 16777216.0;  // int_, int_list elements: |x| <= 2^24
inline constexpr double kParamFloatLimit = 1e9;       // float_
void apply_default_bounds(ParamSpec& spec);

// Values by parameter name. A complete set (every schema entry present and valid) is what
// policies receive.
class ParamValues {
  public:
    ParamValues() = default;

    bool has(const std::string& name) const { return values_.count(name) != 0; }
    void set(const std::string& name, ParamValue v) { values_[name] = std::move(v); }
    const std::map<std::string, ParamValue>& all() const { return values_; }

    // Typed getters; throw std::invalid_argument when missing or of another type.
    int64_t get_int(const std::string& name) const;
    double get_float(const std::string& name) const;
    bool get_bool(const std::string& name) const;
    const std::string& get_enum(const std::string& name) const;
    const std::vector<int64_t>& get_int_list(const std::string& name) const;

  private:
    std::map<std::string, ParamValue> values_;
};

// The schema's defaults.
ParamValues default_params(const ParamSchema& schema);

// Parses one value for `spec` from text ("3", "0.5", "true|false|1|0|yes|no|on|off", "avg",
// "0,1,12" or "" for an empty list). Throws InputError naming the policy, the parameter and the
// expected type/range/choices.
ParamValue parse_param_value(const std::string& policy, const ParamSpec& spec,
                             const std::string& text);

// Checks one value against its spec (type, range, choices); throws InputError as above.
void validate_param(const std::string& policy, const ParamSpec& spec, const ParamValue& v);

// Defaults overridden by `key=value` assignments (the CLI's repeated --param). Unknown keys,
// malformed assignments, repeated keys and invalid values throw InputError naming the policy and
// the parameter (with the list of known parameters for an unknown key).
ParamValues parse_param_assignments(const std::string& policy, const ParamSchema& schema,
                                    const std::vector<std::string>& assignments);

// Validates a complete set (missing entries are filled from defaults); throws InputError.
ParamValues complete_params(const std::string& policy, const ParamSchema& schema,
                            const ParamValues& given);

}  // namespace kvscope
