// Saved prompt states (.kvstate.h5): a round trip keeps everything a preview or a re-run reads
// (bit-exact floats), and damaged, foreign or truncated files are refused with the file named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "app/recorder/live_session.h"
#include "app/recorder/prefill_state_file.h"
#include "core/error.h"
#include "core/model/model.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
const fs::path kDemo = fs::path(KVSCOPE_SOURCE_DIR) / "resources" / "models" / "kvscope-demo";

fs::path scratch(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("kvscope_state_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d / name;
}

struct Fixture {
    std::unique_ptr<Model> model = load_model(kDemo);
    std::unique_ptr<Tokenizer> tok = load_tokenizer(kDemo);
    record::RunInput input;
    Fixture() {
        record::ScenarioRequest req;
        req.length = 200;
        req.seed = 3;
        input = record::build_scenario_input(*tok, kDemo.string(), req);
    }
};

TEST(PrefillStateFile, RoundTripKeepsPreviewsAndReruns) {
    Fixture fx;
    record::LiveSession a(*fx.model, *fx.tok, kDemo.string(), fx.input, 2);
    a.prefill();
    const fs::path path = scratch("a.kvstate.h5");
    fs::remove(path);
    record::save_prefill_state(path, a.state(), fx.model->spec, fx.input, kDemo.string(), false);
    EXPECT_FALSE(fs::exists(path.string() + ".part"));
    EXPECT_THROW(record::save_prefill_state(path, a.state(), fx.model->spec, fx.input,
                                            kDemo.string(), false),
                 InputError);  // never clobbered without overwrite
    EXPECT_EQ(record::saved_state_model_path(path), kDemo.string());

    record::SavedPrefill saved = record::load_prefill_state(path, fx.model->spec);
    EXPECT_EQ(saved.input.ids, fx.input.ids);
    EXPECT_EQ(saved.input.answer, fx.input.answer);
    ASSERT_EQ(saved.input.spans.size(), fx.input.spans.size());
    EXPECT_EQ(saved.input.spans[0].begin, fx.input.spans[0].begin);
    const PrefillState& x = a.state();
    const PrefillState& y = *saved.state;
    EXPECT_EQ(x.last_logits, y.last_logits);  // bit-exact
    EXPECT_EQ(x.window_rows(), y.window_rows());
    for (size_t l = 0; l < x.stats.size(); ++l) {
        EXPECT_EQ(x.stats[l].colsum, y.stats[l].colsum) << l;
        EXPECT_EQ(x.stats[l].window, y.stats[l].window) << l;
        EXPECT_EQ(x.stats[l].key_norm, y.stats[l].key_norm) << l;
        EXPECT_EQ(x.stats[l].query_absmax, y.stats[l].query_absmax) << l;
    }
    EXPECT_EQ(x.cache->bytes_held(), y.cache->bytes_held());

    record::LiveSession b(*fx.model, *fx.tok, kDemo.string(), saved.input, 2);
    b.adopt_state(saved.state);
    for (const std::string name : {"snapkv", "mikv", "pyramidkv"}) {
        record::PolicyChoice c{name, {}, {}};
        c.budget.ratio = 0.3;
        const whatif::Preview pa = a.preview(c), pb = b.preview(c);
        ASSERT_EQ(pa.heads.size(), pb.heads.size());
        for (size_t i = 0; i < pa.heads.size(); ++i) {
            EXPECT_EQ(pa.heads[i].positions, pb.heads[i].positions) << name;
            EXPECT_EQ(pa.heads[i].k_bits, pb.heads[i].k_bits) << name;
        }
        EXPECT_EQ(pa.bytes_total, pb.bytes_total) << name;
    }
    record::RerunRequest rr;
    rr.policy = {"h2o", {}, {}};
    rr.policy.budget.ratio = 0.3;
    rr.sampling.max_new = 5;
    rr.sampling.ignore_eos = true;
    rr.trace = scratch("a.kvtrace.h5");
    fs::remove(rr.trace);
    const record::RerunResult ra = a.rerun(rr);
    rr.trace = scratch("b.kvtrace.h5");
    fs::remove(rr.trace);
    const record::RerunResult rb = b.rerun(rr);
    EXPECT_TRUE(rb.resumed);
    EXPECT_EQ(ra.text, rb.text);
    EXPECT_EQ(ra.bytes_held_final, rb.bytes_held_final);
    fs::remove_all(path.parent_path());
}

TEST(PrefillStateFile, BadFilesAreRefusedWithTheFileNamed) {
    Fixture fx;
    const auto expect_error = [&](const fs::path& p, const std::string& what) {
        try {
            (void)record::load_prefill_state(p, fx.model->spec);
            ADD_FAILURE() << p << " was accepted";
        } catch (const InputError& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
            EXPECT_NE(msg.find(what), std::string::npos) << msg;
        }
    };
    expect_error(scratch("missing.kvstate.h5"), "no such file");
    const fs::path text = scratch("notes.kvstate.h5");
    std::ofstream(text) << "not hdf5\n";
    expect_error(text, "not an HDF5 file");
    // A trace is HDF5 but not a state.
    expect_error(fs::path(KVSCOPE_SOURCE_DIR) / "resources" / "sample" / "sample.kvtrace.h5",
                 "not a saved prompt state");

    record::LiveSession s(*fx.model, *fx.tok, kDemo.string(), fx.input, 2);
    s.prefill();
    const fs::path good = scratch("good.kvstate.h5");
    fs::remove(good);
    record::save_prefill_state(good, s.state(), fx.model->spec, fx.input, kDemo.string(), false);
    // Another model's shape.
    auto other =
        load_model(fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden" / "models" / "llama_sp");
    try {
        (void)record::load_prefill_state(good, other->spec);
        ADD_FAILURE() << "a state of another model was accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("another shape"), std::string::npos) << e.what();
    }
    // Truncated halfway: refused, never a crash.
    const fs::path cut = scratch("cut.kvstate.h5");
    fs::copy_file(good, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, fs::file_size(good) / 2);
    EXPECT_THROW((void)record::load_prefill_state(cut, fx.model->spec), InputError);
    // A state of another prompt cannot be adopted by a session.
    record::ScenarioRequest req;
    req.length = 120;
    record::RunInput other_prompt = record::build_scenario_input(*fx.tok, kDemo.string(), req);
    record::LiveSession t(*fx.model, *fx.tok, kDemo.string(), other_prompt, 2);
    EXPECT_THROW(t.adopt_state(s.shared_state()), InputError);
    fs::remove_all(good.parent_path());
}

}  // namespace
}  // namespace kvscope
