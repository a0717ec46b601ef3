#pragma once
// The built-in policies. Each policy file defines one `PolicyEntry <name>_policy_entry()` (its
// info, parameter schema and factory); builtin_policies.cpp lists them all and is the only other
// file a new policy touches (docs/how_to_add_a_policy.md).
#include "core/policies/registry.h"

namespace kvscope {

// Adds every built-in policy to r (PolicyRegistry::global() calls it once).
void register_builtin_policies(PolicyRegistry& r);

}  // namespace kvscope
