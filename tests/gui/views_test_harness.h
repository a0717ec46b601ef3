#pragma once
// Harness of the Studio's headless GoogleTest binary (test_gui_model: trace model, views drawn
// without a display, compare mode, previews, the NIAH grid): the sample trace and scratch files.
#include <filesystem>
#include <string>

namespace kvscope::views {

// The sample trace every Studio test opens (resources/sample; `kvscope inspect` describes it).
inline const std::filesystem::path kSample =
    std::filesystem::path(KVSCOPE_SOURCE_DIR) / "resources/sample/sample.kvtrace.h5";

// A D2O run of schema version 1 as first written (no /summary, no prompt states): the sample as
// it was before the demo model of issue 12 (tests/traces/old_samples/README.md).
inline const std::filesystem::path kOldSample =
    std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/traces/old_samples/sample.kvtrace.h5";

// `name` in this test's scratch folder `folder` (under the temp folder; created on use).
inline std::filesystem::path scratch_path(const std::string& folder, const std::string& name) {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / folder;
    std::filesystem::create_directories(dir);
    return dir / name;
}

}  // namespace kvscope::views
