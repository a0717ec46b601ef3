#pragma once
// The built-in policies' registry entries, one function per policy file (defined there).
// builtin_policies.cpp adds them all to PolicyRegistry::global(). To add a policy: declare its
// entry function here and add one line to builtin_policies.cpp.
#include "core/policies/registry.h"

namespace kvscope {

// Adds every entry below to r.
void register_builtin_policies(PolicyRegistry& r);

PolicyEntry full_policy_entry();
PolicyEntry streaming_llm_policy_entry();
PolicyEntry h2o_policy_entry();
PolicyEntry tova_policy_entry();
PolicyEntry snapkv_policy_entry();
PolicyEntry pyramidkv_policy_entry();
PolicyEntry knorm_policy_entry();
PolicyEntry d2o_policy_entry();
PolicyEntry dmc_policy_entry();
PolicyEntry dynamickv_policy_entry();
PolicyEntry mikv_policy_entry();
PolicyEntry kivi_policy_entry();

}  // namespace kvscope
