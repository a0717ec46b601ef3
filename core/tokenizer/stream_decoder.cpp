// StreamDecoder: the prefix/read-offset scheme of HF text-generation-inference. Each push
// decodes the ids since the last emission twice (without and with the new id) and emits the
// difference once it ends in complete UTF-8. Decoding from a token boundary rather than from the
// start keeps the cost per token small; starting the window one emission back keeps decoders
// that treat the first token specially (SentencePiece's leading-space strip) consistent.
#include <algorithm>

#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/utf8.h"

namespace kvscope {

namespace {

// Ids of context carried into a stream: enough to cover any decoder look-behind in practice.
constexpr size_t kContextIds = 6;

bool ends_with_replacement(const std::string& s) {
    static const std::string r = utf8::encode(utf8::kReplacement);
    return s.size() >= r.size() && s.compare(s.size() - r.size(), r.size(), r) == 0;
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tok, const std::vector<int32_t>& context,
                             bool skip_special)
    : tok_(tok), skip_special_(skip_special) {
    const size_t n = std::min(context.size(), kContextIds);
    ids_.assign(context.end() - static_cast<std::ptrdiff_t>(n), context.end());
    read_ = ids_.size();
}

std::string StreamDecoder::push(int32_t id) {
    ids_.push_back(id);
    const std::vector<int32_t> done(ids_.begin() + static_cast<std::ptrdiff_t>(prefix_),
                                    ids_.begin() + static_cast<std::ptrdiff_t>(read_));
    const std::vector<int32_t> all(ids_.begin() + static_cast<std::ptrdiff_t>(prefix_), ids_.end());
    const std::string before = tok_.decode(done, skip_special_);
    const std::string after = tok_.decode(all, skip_special_);
    // Hold back while the text ends inside a UTF-8 sequence: as raw bytes, or as the U+FFFD a
    // lossy decoder puts there.
    if (after.size() <= before.size() || ends_with_replacement(after) ||
        utf8::incomplete_tail(after) > 0)
        return "";
    std::string out = utf8::lossy(std::string_view(after).substr(before.size()));
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(read_));
    prefix_ = 0;
    read_ = ids_.size();
    return out;
}

std::string StreamDecoder::flush() {
    const std::vector<int32_t> done(ids_.begin() + static_cast<std::ptrdiff_t>(prefix_),
                                    ids_.begin() + static_cast<std::ptrdiff_t>(read_));
    const std::vector<int32_t> all(ids_.begin() + static_cast<std::ptrdiff_t>(prefix_), ids_.end());
    const std::string before = tok_.decode(done, skip_special_);
    const std::string after = tok_.decode(all, skip_special_);
    std::string out;
    if (after.size() > before.size())
        out = utf8::lossy(std::string_view(after).substr(before.size()));
    // What was flushed becomes the context of anything pushed later.
    const size_t n = std::min(ids_.size(), kContextIds);
    ids_.erase(ids_.begin(), ids_.end() - static_cast<std::ptrdiff_t>(n));
    prefix_ = 0;
    read_ = ids_.size();
    return out;
}

}  // namespace kvscope
