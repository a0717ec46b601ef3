// llama2.c tokenizer.bin: int32 max_token_length, then per token (to the end of the file):
// float32 score, int32 byte length, the bytes (U+2581 already written as a space; BOS/EOS
// written as "\n<s>\n" / "\n</s>\n"). Ids 0, 1, 2 are UNK, BOS, EOS and ids 3..258 the <0xNN>
// byte tokens, as in the Llama-2 sentencepiece vocabulary llama2.c was made for.
//
// Encoding is llama2.c's: a dummy-prefix " " token, one token per UTF-8 code point (bytes + 3
// when the code point is not in the vocabulary), then the adjacent pair whose concatenation is
// in the vocabulary with the highest score is merged, leftmost first on ties, until none is left.
// llama2.c rescans all pairs per merge (quadratic); here a priority queue gives the same merges
// in O(n log n).
#include <cmath>
#include <cstring>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/tokenizer/hf_pipeline.h"
#include "core/tokenizer/tokenizer_factories.h"
#include "core/tokenizer/utf8.h"

namespace kvscope {

namespace fs = std::filesystem;

namespace {

constexpr int32_t kUnk = 0, kBos = 1, kEos = 2, kFirstByte = 3;
constexpr int32_t kMaxTokenLength = 1 << 16;
constexpr size_t kMaxTokens = 1 << 24;

class Llama2cTokenizer : public Tokenizer {
  public:
    Llama2cTokenizer(const fs::path& file, int32_t expected_vocab);

    std::vector<int32_t> encode(std::string_view text, bool add_special) const override;
    std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
    std::string token_bytes(int32_t id) const override;
    int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
    int32_t bos_id() const override { return kBos < vocab_size() ? kBos : -1; }
    int32_t eos_id() const override { return kEos < vocab_size() ? kEos : -1; }
    bool is_special(int32_t id) const override {
        return id >= 0 && id <= kEos && id < vocab_size();
    }
    std::string kind() const override { return "llama2c"; }

  private:
    int32_t lookup(std::string_view s) const {
        const auto it = index_.find(std::string(s));
        return it == index_.end() ? -1 : it->second;
    }
    // The text a piece prints as: <0xNN> as its byte, "\n<s>\n" as "<s>".
    std::string piece_text(int32_t id) const;

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::unordered_map<std::string, int32_t> index_;  // piece -> lowest id with it
    bool byte_tokens_ = false;                        // ids 3..258 are <0x00>..<0xFF>
};

Llama2cTokenizer::Llama2cTokenizer(const fs::path& file, int32_t expected_vocab) {
    std::error_code ec;
    if (!fs::exists(file, ec)) throw InputError(file, "file not found");
    if (fs::is_directory(file, ec))
        throw InputError(file, "is a directory, expected a llama2.c tokenizer.bin");
    std::ifstream in(file, std::ios::binary);
    if (!in) throw InputError(file, "cannot open for reading");
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string data = ss.str();
    size_t pos = 0;
    auto read_i32 = [&](int32_t& v) {
        if (data.size() - pos < 4) return false;
        std::memcpy(&v, data.data() + pos, 4);
        pos += 4;
        return true;
    };
    int32_t max_len = 0;
    if (!read_i32(max_len)) throw InputError(file, "truncated: no max_token_length header");
    if (max_len <= 0 || max_len > kMaxTokenLength)
        throw InputError(file, "max_token_length " + std::to_string(max_len) +
                                   " is not a plausible llama2.c tokenizer header");
    while (pos < data.size()) {
        const size_t n = pieces_.size();
        if (n >= kMaxTokens) throw InputError(file, "more than 16M tokens: not a tokenizer");
        if (expected_vocab > 0 && n == static_cast<size_t>(expected_vocab)) break;
        float score = 0;
        int32_t len = 0;
        if (data.size() - pos < 8)
            throw InputError(file, "truncated in the header of token " + std::to_string(n));
        std::memcpy(&score, data.data() + pos, 4);
        pos += 4;
        read_i32(len);
        if (!std::isfinite(score))
            throw InputError(file, "token " + std::to_string(n) + " has a non-finite score");
        if (len <= 0 || len > max_len)
            throw InputError(file, "token " + std::to_string(n) + " has length " +
                                       std::to_string(len) + " (expected 1.." +
                                       std::to_string(max_len) + ")");
        if (data.size() - pos < static_cast<size_t>(len))
            throw InputError(file, "truncated in the bytes of token " + std::to_string(n));
        pieces_.emplace_back(data.substr(pos, static_cast<size_t>(len)));
        scores_.push_back(score);
        pos += static_cast<size_t>(len);
    }
    if (pieces_.empty()) throw InputError(file, "holds no tokens");
    if (expected_vocab > 0 && pieces_.size() != static_cast<size_t>(expected_vocab))
        throw InputError(file, "holds " + std::to_string(pieces_.size()) +
                                   " tokens but the model's vocabulary has " +
                                   std::to_string(expected_vocab));
    for (size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], static_cast<int32_t>(i));
    byte_tokens_ = pieces_.size() >= static_cast<size_t>(kFirstByte) + 256;
    for (int b = 0; b < 256 && byte_tokens_; ++b)
        byte_tokens_ = hf::parse_byte_token(
                           pieces_[static_cast<size_t>(kFirstByte) + static_cast<size_t>(b)]) == b;
}

std::vector<int32_t> Llama2cTokenizer::encode(std::string_view text, bool add_special) const {
    std::vector<int32_t> out;
    if (add_special && bos_id() >= 0) out.push_back(kBos);
    // Symbols of a linked list, as in the BPE model; merged-away ones are no longer alive.
    struct Symbol {
        int32_t id;
        int32_t prev, next;
        bool alive;
    };
    std::vector<Symbol> syms;
    syms.reserve(text.size() + 1);
    auto add = [&](int32_t id) {
        const auto n = static_cast<int32_t>(syms.size());
        if (n > 0) syms.back().next = n;
        syms.push_back({id, n - 1, -1, true});
    };
    auto add_bytes = [&](std::string_view bytes) {
        for (unsigned char c : bytes) add(byte_tokens_ ? kFirstByte + c : kUnk);
    };
    if (!text.empty()) {
        const int32_t space = lookup(" ");
        if (space >= 0)
            add(space);
        else
            add_bytes(" ");
    }
    for (size_t i = 0; i < text.size();) {
        // llama2.c groups a lead byte with up to 3 following continuation bytes.
        size_t len = 1;
        while (i + len < text.size() && len < 4 &&
               (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80)
            ++len;
        const int32_t id = lookup(text.substr(i, len));
        if (id >= 0)
            add(id);
        else
            add_bytes(text.substr(i, len));
        i += len;
    }

    struct Merge {
        float score;
        int32_t pos;
        int32_t left_id, right_id, new_id;
        bool operator<(const Merge& o) const {  // max-heap: highest score, then leftmost
            return score != o.score ? score < o.score : pos > o.pos;
        }
    };
    std::priority_queue<Merge> queue;
    auto consider = [&](int32_t left) {
        const int32_t right = syms[static_cast<size_t>(left)].next;
        if (right < 0) return;
        const int32_t a = syms[static_cast<size_t>(left)].id,
                      b = syms[static_cast<size_t>(right)].id;
        const int32_t id =
            lookup(pieces_[static_cast<size_t>(a)] + pieces_[static_cast<size_t>(b)]);
        if (id >= 0) queue.push({scores_[static_cast<size_t>(id)], left, a, b, id});
    };
    for (size_t k = 0; k + 1 < syms.size(); ++k) consider(static_cast<int32_t>(k));
    while (!queue.empty()) {
        const Merge top = queue.top();
        queue.pop();
        Symbol& left = syms[static_cast<size_t>(top.pos)];
        if (!left.alive || left.next < 0 || left.id != top.left_id ||
            syms[static_cast<size_t>(left.next)].id != top.right_id)
            continue;  // stale: one side has merged since
        Symbol& right = syms[static_cast<size_t>(left.next)];
        right.alive = false;
        left.id = top.new_id;
        left.next = right.next;
        if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
        if (left.prev >= 0) consider(left.prev);
        consider(top.pos);
    }
    for (const Symbol& s : syms)
        if (s.alive) out.push_back(s.id);
    return out;
}

std::string Llama2cTokenizer::piece_text(int32_t id) const {
    const std::string& p = pieces_[static_cast<size_t>(id)];
    if (is_special(id)) {
        const size_t b = p.find_first_not_of('\n'), e = p.find_last_not_of('\n');
        return b == std::string::npos ? std::string() : p.substr(b, e - b + 1);
    }
    const int byte = hf::parse_byte_token(p);
    return byte >= 0 ? std::string(1, static_cast<char>(byte)) : p;
}

// As llama2.c: a piece after BOS loses its leading space; so does the first printed piece (the
// dummy prefix), which is what sentencepiece's decoder does.
std::string Llama2cTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::string out;
    int32_t prev = -1;
    for (int32_t id : ids) {
        if (id < 0 || id >= vocab_size()) continue;
        if (skip_special && is_special(id)) {
            prev = id;
            continue;
        }
        std::string t = piece_text(id);
        const bool is_byte = hf::parse_byte_token(pieces_[static_cast<size_t>(id)]) >= 0;
        if (!is_byte && !t.empty() && t[0] == ' ' && (out.empty() || prev == kBos)) t.erase(0, 1);
        out += t;
        prev = id;
    }
    return out;
}

std::string Llama2cTokenizer::token_bytes(int32_t id) const {
    if (id < 0 || id >= vocab_size()) return "";
    return piece_text(id);
}

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const fs::path& file, int32_t expected_vocab) {
    return std::make_unique<Llama2cTokenizer>(file, expected_vocab);
}

}  // namespace kvscope
