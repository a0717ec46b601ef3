// Test-only bridge for the scenario parity test (scenario_parity_test.py): the Python twin
// tools/train_demo/scenarios.py is run with this program's tokenizer, so the test compares the
// two builders' logic (draws, filling, placement) with one tokenizer, ids for ids.
//   scenario_ids encode TOKENIZER
//       stdin lines "<0|1> <hex of UTF-8 text>" -> stdout lines of space-separated ids
//       (0/1: add the BOS template); an empty stdin line ends.
//   scenario_ids build TOKENIZER KIND HAYSTACK LENGTH DEPTH SEED NEEDLES DISTRACTORS
//                [TEMPLATES SPLIT]
//       one scenario -> stdout JSON {"ids", "answer", "text", "template"}
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/scenarios/haystack.h"
#include "core/scenarios/needle_templates.h"
#include "core/scenarios/scenario.h"
#include "core/tokenizer/tokenizer.h"

namespace {

std::string unhex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

int encode_loop(const kvscope::Tokenizer& tok) {
    std::string line;
    while (std::getline(std::cin, line) && !line.empty()) {
        const size_t sp = line.find(' ');
        const bool special = line[0] == '1';
        const std::string text = sp == std::string::npos ? "" : unhex(line.substr(sp + 1));
        std::string out;
        for (int32_t id : tok.encode(text, special)) out += std::to_string(id) + " ";
        std::cout << out << '\n' << std::flush;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kvscope;
    try {
        if (argc == 3 && std::string(argv[1]) == "encode")
            return encode_loop(*load_tokenizer(argv[2]));
        if (!(argc == 10 || argc == 12) || std::string(argv[1]) != "build") {
            std::fprintf(stderr,
                         "usage: %s encode TOKENIZER | build TOKENIZER KIND HAYSTACK LENGTH DEPTH "
                         "SEED NEEDLES DISTRACTORS [TEMPLATES SPLIT]\n",
                         argv[0]);
            return 2;
        }
        const auto tok = load_tokenizer(argv[2]);
        const Haystack hay = load_haystack(argv[4]);
        NeedleTemplateSet set;
        ScenarioOptions o;
        o.kind = parse_scenario_kind(argv[3]);
        o.length = std::atoll(argv[5]);
        o.depth = std::atof(argv[6]);
        o.seed = std::strtoull(argv[7], nullptr, 10);
        o.num_needles = std::atoi(argv[8]);
        o.distractors = std::atoi(argv[9]);
        if (argc == 12) {
            set = load_needle_templates(argv[10]);
            o.templates = &set;
            o.split = parse_template_split(argv[11]);
        }
        ScenarioBuilder b(*tok, &hay);
        const Scenario sc = b.build(o);
        const nlohmann::json j = {{"ids", sc.ids},
                                  {"answer", sc.answer},
                                  {"text", sc.text},
                                  {"template", sc.template_id}};
        std::cout << j.dump() << '\n';
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
