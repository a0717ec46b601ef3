#pragma once
// A saved full-cache prompt state (`.kvstate.h5`): what `kvscope whatif --save-state` writes and
// `kvscope whatif --state` / `kvscope run --state` read, so scripts can try many policies and
// budgets over many invocations with one prefill (core/engine/prefill_state.h).
//
// Layout (HDF5; L layers, H query heads, G KV heads, P prompt tokens, W window rows, d head_dim,
// V vocabulary; every dataset float32 unless said):
//   root attribute  kvstate_version  int32  1
//   /meta_json      uint8 [B]       UTF-8 JSON: model path and shape, the statistics computed,
//                                   the prompt text, needles (spans) and expected answer
//   /prompt_ids     int32 [P]
//   /last_logits    [V]             logits of the last prompt position
//   /cache/k        [L, G, P, d]    post-RoPE keys of every prompt token (full precision)
//   /cache/v        [L, G, P, d]
//   /stats/colsum        [L, H, P]     (when computed)
//   /stats/window        [L, H, W, P]  the last W prompt query rows (when computed)
//   /stats/key_norm      [L, G, P]     (when computed)
//   /stats/query_absmax  [L, G, d]     (when computed)
// No variable-length strings (the fragile part of HDF5 on damaged files); every extent is checked
// against the model and the metadata before anything is allocated.
#include <filesystem>
#include <memory>
#include <string>

#include "app/recorder/run_setup.h"
#include "core/engine/prefill_state.h"
#include "core/model/model_spec.h"

namespace kvscope::record {

struct SavedPrefill {
    std::shared_ptr<const PrefillState> state;
    RunInput input;
    std::string model_path;  // as recorded
};

// Writes `path` (via path.part renamed into place; refuses an existing file unless `overwrite`).
// Throws InputError naming the file.
void save_prefill_state(const std::filesystem::path& path, const PrefillState& state,
                        const ModelSpec& spec, const RunInput& input, const std::string& model_path,
                        bool overwrite);

// Reads a state saved for a model of `spec`'s shape. Throws InputError naming the file and the
// problem (not a state file, another model's shape, damaged or truncated datasets).
SavedPrefill load_prefill_state(const std::filesystem::path& path, const ModelSpec& spec);
// The model path recorded in a saved state (to load the model before the state).
std::string saved_state_model_path(const std::filesystem::path& path);

}  // namespace kvscope::record
