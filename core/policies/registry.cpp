#include "core/policies/registry.h"

#include <algorithm>
#include <stdexcept>

#include "core/error.h"
#include "core/policies/builtin_policies.h"

namespace kvscope {

PolicyRegistry& PolicyRegistry::global() {
    static PolicyRegistry reg = [] {
        PolicyRegistry r;
        register_builtin_policies(r);
        return r;
    }();
    return reg;
}

void PolicyRegistry::add(PolicyEntry entry) {
    if (find(entry.info.name))
        throw std::invalid_argument("policy '" + entry.info.name + "' is registered twice");
    for (ParamSpec& p : entry.schema) apply_default_bounds(p);  // finite ranges everywhere
    entries_.push_back(std::move(entry));
}

const PolicyEntry* PolicyRegistry::find(const std::string& name) const {
    for (const PolicyEntry& e : entries_)
        if (e.info.name == name) return &e;
    return nullptr;
}

std::vector<std::string> PolicyRegistry::names() const {
    std::vector<std::string> n;
    for (const PolicyEntry& e : entries_) n.push_back(e.info.name);
    std::sort(n.begin(), n.end());
    return n;
}

std::vector<const PolicyEntry*> PolicyRegistry::list() const {
    std::vector<const PolicyEntry*> l;
    for (const PolicyEntry& e : entries_) l.push_back(&e);
    std::sort(l.begin(), l.end(), [](const PolicyEntry* a, const PolicyEntry* b) {
        return a->info.name < b->info.name;
    });
    return l;
}

namespace {
const PolicyEntry& find_or_throw(const PolicyRegistry& r, const std::string& name) {
    const PolicyEntry* e = r.find(name);
    if (!e) {
        std::string known;
        for (const std::string& n : r.names()) known += (known.empty() ? "" : ", ") + n;
        throw InputError("unknown policy '" + name + "' (known: " + known + ")");
    }
    return *e;
}
}  // namespace

std::unique_ptr<Policy> PolicyRegistry::create(const std::string& name, const Budget& budget,
                                               const std::vector<std::string>& assignments) const {
    const PolicyEntry& e = find_or_throw(*this, name);
    validate_budget(name, budget, e.info.needs_budget);
    return e.make(PolicyConfig{budget, parse_param_assignments(name, e.schema, assignments)});
}

std::unique_ptr<Policy> PolicyRegistry::create(const std::string& name, const Budget& budget,
                                               const ParamValues& params) const {
    const PolicyEntry& e = find_or_throw(*this, name);
    validate_budget(name, budget, e.info.needs_budget);
    return e.make(PolicyConfig{budget, complete_params(name, e.schema, params)});
}

std::unique_ptr<Policy> make_policy(const std::string& name, const Budget& budget,
                                    const std::vector<std::string>& param_assignments) {
    return PolicyRegistry::global().create(name, budget, param_assignments);
}

}  // namespace kvscope
