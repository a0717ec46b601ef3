// Test-only dump of the C++ reference replay (TraceReader::token_states) for tests/scripts:
//   dump_token_states TRACE OUT.bin
// Writes, for every committed step s, layer l and head h (in that nesting order), the states of
// positions 0 .. P+s-1 after step s, so the Python reader can be compared with it exactly.
// File layout (little-endian, no padding):
//   char[8] "KVTS0001"; int64 S, L, H, P
//   then per (s, l, h): uint8 state[n], int8 bits[n], int32 merged_into[n]   (n = P + s)
// state values are TokenCacheState (traces/trace_reader.h).
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include "traces/trace_reader.h"

int main(int argc, char** argv) {
    using namespace kvscope::trace;
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s TRACE OUT.bin\n", argv[0]);
        return 2;
    }
    try {
        const TraceReader reader(argv[1]);
        const TraceInfo info = reader.info();
        std::FILE* out = std::fopen(argv[2], "wb");
        if (!out) {
            std::perror(argv[2]);
            return 1;
        }
        const int64_t header[4] = {info.n_steps, info.n_layers, info.n_heads, info.n_prompt_tokens};
        std::fwrite("KVTS0001", 1, 8, out);
        std::fwrite(header, sizeof(int64_t), 4, out);
        for (int64_t s = 0; s < info.n_steps; ++s)
            for (int32_t l = 0; l < info.n_layers; ++l)
                for (int32_t h = 0; h < info.n_heads; ++h) {
                    const std::vector<TokenState> st = reader.token_states(l, h, s);
                    std::vector<uint8_t> state(st.size());
                    std::vector<int8_t> bits(st.size());
                    std::vector<int32_t> into(st.size());
                    for (size_t i = 0; i < st.size(); ++i) {
                        state[i] = static_cast<uint8_t>(st[i].state);
                        bits[i] = st[i].bits;
                        into[i] = st[i].merged_into;
                    }
                    std::fwrite(state.data(), 1, state.size(), out);
                    std::fwrite(bits.data(), 1, bits.size(), out);
                    std::fwrite(into.data(), sizeof(int32_t), into.size(), out);
                }
        if (std::fclose(out) != 0) {
            std::perror(argv[2]);
            return 1;
        }
        std::printf("%lld steps x %d layers x %d heads\n", static_cast<long long>(info.n_steps),
                    info.n_layers, info.n_heads);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dump_token_states: %s\n", e.what());
        return 1;
    }
}
