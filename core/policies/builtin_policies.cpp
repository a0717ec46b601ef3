// The list of built-in policies (see builtin_policies.h): one declaration and one table entry per
// policy, each defined in core/policies/<name>.cpp. The table's order is the registration order.
#include "core/policies/builtin_policies.h"

namespace kvscope {

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

void register_builtin_policies(PolicyRegistry& r) {
    for (PolicyEntry (*entry)() :
         {full_policy_entry, streaming_llm_policy_entry, h2o_policy_entry, tova_policy_entry,
          snapkv_policy_entry, pyramidkv_policy_entry, knorm_policy_entry, d2o_policy_entry,
          dmc_policy_entry, dynamickv_policy_entry, mikv_policy_entry, kivi_policy_entry})
        r.add(entry());
}

}  // namespace kvscope
