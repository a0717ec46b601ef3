#pragma once
// STATUS: stable (additions only from here on)
// The policy registry: finds policies by CLI name, lists them (`kvscope policies`, Studio), and
// builds one from the CLI's --budget / --ratio / --param flags with validation.
//
// Built-in policies are listed in builtin_policies.cpp (explicitly: self-registering static
// objects would be dropped by the linker from a static library).
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/policies/policy.h"

namespace kvscope {

struct PolicyEntry {
    PolicyInfo info;
    ParamSchema schema;
    std::function<std::unique_ptr<Policy>(const PolicyConfig&)> make;
};

// The entry of policy class P (constructed from a PolicyConfig): what each policy file returns
// from its <name>_policy_entry().
template <class P>
PolicyEntry policy_entry(PolicyInfo info, ParamSchema schema) {
    return PolicyEntry{std::move(info), std::move(schema),
                       [](const PolicyConfig& c) { return std::make_unique<P>(c); }};
}

class PolicyRegistry {
  public:
    // The registry holding every built-in policy.
    static PolicyRegistry& global();

    // Adds an entry; throws std::invalid_argument on a duplicate name.
    void add(PolicyEntry entry);
    const PolicyEntry* find(const std::string& name) const;
    std::vector<std::string> names() const;        // sorted
    std::vector<const PolicyEntry*> list() const;  // sorted by name

    // Validates budget and parameters and builds the policy. Throws InputError for an unknown
    // name (listing the known ones), a missing/invalid budget or an invalid parameter.
    std::unique_ptr<Policy> create(const std::string& name, const Budget& budget,
                                   const std::vector<std::string>& param_assignments) const;
    std::unique_ptr<Policy> create(const std::string& name, const Budget& budget,
                                   const ParamValues& params) const;

  private:
    std::vector<PolicyEntry> entries_;
};

// Convenience: PolicyRegistry::global().create(...).
std::unique_ptr<Policy> make_policy(const std::string& name, const Budget& budget,
                                    const std::vector<std::string>& param_assignments = {});

}  // namespace kvscope
