#pragma once
// What the commands that re-run a recorded trace share (whatif TRACE, explain, rescue): the model
// flags with the model defaulting to the trace's own (--model optional), and loading the trace's
// model, tokenizer, prompt tokens and needles.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "app/cli/cli_common.h"
#include "app/recorder/run_setup.h"
#include "traces/trace_reader.h"

namespace kvscope::cli {

// --model (default: the trace's), --tokenizer, --threads, --device.
void add_trace_model_options(CLI::App& sub, ModelArgs& args);

struct TraceRun {
    std::unique_ptr<trace::TraceReader> reader;
    Loaded loaded;
    record::RunInput input;
    const trace::MarkedSpan* needle = nullptr;  // the queried needle ("needle"), else the first
};

// Opens `trace`, resolves its model (args.model when given; the recorded path, looked up from the
// trace's folder when relative), loads it and checks its shape against the trace. With
// `need_needle`, a trace without a marked needle is an InputError naming it.
TraceRun load_trace_run(const std::string& trace, ModelArgs& args, bool need_needle);

}  // namespace kvscope::cli
