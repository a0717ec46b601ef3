// libFuzzer target for llama2.c tokenizer.bin (core/tokenizer/llama2c_tokenizer.cpp): each input
// is written as tokenizer.bin and loaded with load_tokenizer; a tokenizer that loads encodes and
// decodes a few hostile strings. InputError is the expected outcome of bad input; any other
// exception, crash or sanitizer report is a bug.
//   seed corpus: tests/fuzz/seeds/llama2c_tokenizer/ (tests/golden/tokenizers/spm/tokenizer.bin)
//   run: ./fuzz_llama2c_tokenizer -max_len=16384 tests/fuzz/seeds/llama2c_tokenizer
#include <unistd.h>

#include "tests/fuzz/fuzz_tokenizer_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    kvscope::fuzz::load_and_exercise("llama2c_tokenizer", "tokenizer.bin", data, size);
    return 0;
}
