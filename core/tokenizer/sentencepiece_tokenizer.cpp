// sentencepiece tokenizer.model, through libsentencepiece: encode/decode are the library's own,
// so they match the reference exactly. BOS/EOS/UNK ids come from the model's trainer spec.
#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/tokenizer/hf_pipeline.h"
#include "core/tokenizer/tokenizer_factories.h"

namespace kvscope {

namespace fs = std::filesystem;

namespace {

class SentencePieceTokenizer : public Tokenizer {
  public:
    explicit SentencePieceTokenizer(const fs::path& file) : file_(file) {
        std::error_code ec;
        if (!fs::exists(file, ec)) throw InputError(file, "file not found");
        if (fs::is_directory(file, ec))
            throw InputError(file, "is a directory, expected a sentencepiece model");
        std::ifstream in(file, std::ios::binary);
        if (!in) throw InputError(file, "cannot open for reading");
        std::ostringstream ss;
        ss << in.rdbuf();
        const std::string bytes = ss.str();
        if (bytes.empty()) throw InputError(file, "empty file, expected a sentencepiece model");
        const auto st = sp_.LoadFromSerializedProto(bytes);
        if (!st.ok()) throw InputError(file, "not a valid sentencepiece model: " + st.ToString());
        if (sp_.GetPieceSize() <= 0) throw InputError(file, "sentencepiece model has no pieces");
    }

    std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
        std::vector<int> ids;
        const auto st = sp_.Encode(std::string(text), &ids);
        if (!st.ok()) throw InputError(file_, "sentencepiece could not encode: " + st.ToString());
        std::vector<int32_t> out;
        out.reserve(ids.size() + 1);
        if (add_special && sp_.bos_id() >= 0) out.push_back(sp_.bos_id());
        out.insert(out.end(), ids.begin(), ids.end());
        return out;
    }

    // sentencepiece renders control pieces (<s>, </s>) as nothing and strips the dummy-prefix
    // space of the first piece; skip_special also drops <unk>.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override {
        std::vector<int> keep;
        keep.reserve(ids.size());
        for (int32_t id : ids) {
            if (id < 0 || id >= sp_.GetPieceSize()) continue;
            if (skip_special && is_special(id)) continue;
            keep.push_back(id);
        }
        std::string out;
        const auto st = sp_.Decode(keep, &out);
        if (!st.ok()) throw InputError(file_, "sentencepiece could not decode: " + st.ToString());
        return out;
    }

    std::string token_bytes(int32_t id) const override {
        if (id < 0 || id >= sp_.GetPieceSize()) return "";
        std::string piece = sp_.IdToPiece(id);
        if (sp_.IsByte(id)) {
            const int b = hf::parse_byte_token(piece);
            return b >= 0 ? std::string(1, static_cast<char>(b)) : piece;
        }
        if (sp_.IsControl(id) || sp_.IsUnknown(id)) return piece;
        std::string out;
        const std::string meta = "\u2581";
        for (size_t i = 0; i < piece.size();) {
            if (piece.compare(i, meta.size(), meta) == 0) {
                out.push_back(' ');
                i += meta.size();
            } else {
                out.push_back(piece[i++]);
            }
        }
        return out;
    }

    int32_t vocab_size() const override { return sp_.GetPieceSize(); }
    int32_t bos_id() const override { return sp_.bos_id(); }
    int32_t eos_id() const override { return sp_.eos_id(); }
    bool is_special(int32_t id) const override {
        if (id < 0 || id >= sp_.GetPieceSize()) return false;
        return sp_.IsControl(id) || sp_.IsUnknown(id);
    }
    std::string kind() const override { return "sentencepiece"; }

  private:
    fs::path file_;
    sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_model(const fs::path& file) {
    return std::make_unique<SentencePieceTokenizer>(file);
}

}  // namespace kvscope
