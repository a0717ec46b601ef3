#pragma once
// Tokenizers: byte-level BPE and SentencePiece-style BPE from tokenizer.json, tokenizer.model via
// libsentencepiece, and llama2.c tokenizer.bin. Encode/decode match the reference libraries
// (HF tokenizers, sentencepiece) exactly on the golden strings in tests/golden/.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvscope {

class Tokenizer {
  public:
    virtual ~Tokenizer() = default;

    // Text -> ids. Special tokens written in the text (e.g. "<|endoftext|>") are recognised as
    // the reference does. `add_bos` prepends the BOS id when the tokenizer has one and the
    // reference's post-processor would (HF: add_special_tokens=True).
    virtual std::vector<int32_t> encode(std::string_view text, bool add_special) const = 0;

    // Ids -> text. `skip_special` drops special / control tokens (HF skip_special_tokens).
    virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

    // The raw bytes one token stands for (byte-level mapping undone, U+2581 as a space, <0xNN> as
    // that byte). May be a fragment of a UTF-8 sequence. For display of single tokens.
    virtual std::string token_bytes(int32_t id) const = 0;

    virtual int32_t vocab_size() const = 0;
    virtual int32_t bos_id() const = 0;  // -1 if none
    virtual int32_t eos_id() const = 0;  // -1 if none
    virtual bool is_special(int32_t id) const = 0;
    virtual std::string kind()
        const = 0;  // "bpe-bytelevel", "bpe-sentencepiece", "sentencepiece", "llama2c"
};

// Decodes a stream of ids incrementally and emits only complete UTF-8. The concatenated output
// equals tok.decode(all ids, skip_special) (a UTF-8 sequence split over byte tokens is held back
// until complete). Each push re-decodes only the ids since the last emitted text, so a long
// generation costs linear time.
class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
    // `context`: ids already shown before the stream (the prompt). Its last few ids are decoded
    // with the stream so that SentencePiece-style tokenizers keep the leading space of the first
    // generated word ("▁world" after "Hello" prints " world", not "world").
    StreamDecoder(const Tokenizer& tok, const std::vector<int32_t>& context,
                  bool skip_special = false);
    std::string push(int32_t id);  // text that became printable with this id
    std::string flush();           // whatever is left (invalid bytes as U+FFFD)

  private:
    const Tokenizer& tok_;
    bool skip_special_ = false;
    std::vector<int32_t> ids_;  // ids from the last emission point on
    size_t prefix_ = 0;         // ids_[prefix_, read_) were decoded and emitted last time
    size_t read_ = 0;
};

// Finds and loads the tokenizer for a model: `path` is a model directory (tokenizer.json, else
// tokenizer.model), or a file (tokenizer.json, tokenizer.model, tokenizer.bin). Throws InputError.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

}  // namespace kvscope
