// libFuzzer target for SentencePiece tokenizer.model (core/tokenizer/sentencepiece_tokenizer.cpp,
// on top of libsentencepiece): each input is written as tokenizer.model and loaded with
// load_tokenizer; a tokenizer that loads encodes and decodes a few hostile strings. InputError is
// the expected outcome of bad input; any other exception, crash or sanitizer report is a bug
// (libsentencepiece itself is not instrumented: only crashes are seen inside it).
//   seed corpus: tests/fuzz/seeds/sentencepiece/ (tests/golden/tokenizers/spm/tokenizer.model)
//   run: ./fuzz_sentencepiece -max_len=16384 tests/fuzz/seeds/sentencepiece
#include "tests/fuzz/fuzz_tokenizer_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    kvscope::fuzz::load_and_exercise("sentencepiece", "tokenizer.model", data, size);
    return 0;
}
