// The list of built-in policies (see builtin_policies.h). One line per policy.
#include "core/policies/builtin_policies.h"

namespace kvscope {

void register_builtin_policies(PolicyRegistry& r) {
    r.add(full_policy_entry());
    r.add(streaming_llm_policy_entry());
    r.add(h2o_policy_entry());
    r.add(tova_policy_entry());
    r.add(snapkv_policy_entry());
    r.add(pyramidkv_policy_entry());
    r.add(knorm_policy_entry());
    r.add(d2o_policy_entry());
    r.add(dmc_policy_entry());
    r.add(dynamickv_policy_entry());
    r.add(mikv_policy_entry());
    r.add(kivi_policy_entry());
}

}  // namespace kvscope
