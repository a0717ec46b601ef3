#pragma once
// Typed reads of JSON fields for the model loaders (config.json, generation_config.json,
// model.safetensors.index.json, safetensors headers). Every failure is an InputError naming the
// file and the field (as a dotted path, e.g. "rope_scaling.factor"); no nlohmann exception leaks.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace kvscope {

// Reads and parses a whole JSON file. Throws InputError if it is missing, unreadable, not valid
// JSON, or (when `want_object`) not a JSON object.
nlohmann::json read_json_file(const std::filesystem::path& file, bool want_object = true);

// Parses JSON text. Throws InputError naming `file` if it is not valid JSON.
nlohmann::json parse_json_text(const char* begin, const char* end,
                               const std::filesystem::path& file);

// A number as %g prints it ("1e-05", "500000"), for messages.
std::string format_number(double v);

// A short description of a JSON value's type for messages ("string", "array", ...).
std::string json_type_name(const nlohmann::json& v);

// Field readers on an object `obj`. `path` is the field's name for messages (defaults to `key`).
// Absent or null -> nullopt; present with the wrong type -> InputError.
// Integers accept JSON integers and integral floats (4096.0); anything else is an error.
std::optional<int64_t> json_int(const nlohmann::json& obj, const std::string& key,
                                const std::filesystem::path& file, const std::string& path = "");
std::optional<double> json_number(const nlohmann::json& obj, const std::string& key,
                                  const std::filesystem::path& file, const std::string& path = "");
std::optional<bool> json_bool(const nlohmann::json& obj, const std::string& key,
                              const std::filesystem::path& file, const std::string& path = "");
std::optional<std::string> json_string(const nlohmann::json& obj, const std::string& key,
                                       const std::filesystem::path& file,
                                       const std::string& path = "");

// As above but the field must be present and non-null ("missing required field 'x'").
int64_t json_require_int(const nlohmann::json& obj, const std::string& key,
                         const std::filesystem::path& file, const std::string& path = "");

// Converts one JSON value (not a field) to an integer; `what` names it in the message.
int64_t json_value_int(const nlohmann::json& v, const std::filesystem::path& file,
                       const std::string& what);

}  // namespace kvscope
