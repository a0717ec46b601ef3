#include "app/studio/lesson.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace kvscope::studio {

namespace fs = std::filesystem;

namespace {

template <typename T>
void take(const nlohmann::json& j, const char* key, T& out) {
    if (j.contains(key) && !j[key].is_null()) out = j[key].get<T>();
}

fs::path trace_in(const fs::path& file, const fs::path& dir, const std::string& name,
                  const char* field) {
    if (name.empty() || fs::path(name).has_parent_path())
        throw InputError(file,
                         std::string("\"") + field + "\" must name a file of the lesson's folder");
    fs::path p = dir / name;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
        throw InputError(file, std::string("\"") + field + "\": " + p.string() +
                                   " is missing (tools/make_lessons.sh records it)");
    return p;
}

}  // namespace

Lesson load_lesson(const fs::path& dir_in) {
    const fs::path dir = fs::absolute(dir_in).lexically_normal();
    const fs::path file = dir / "lesson.json";
    std::ifstream in(file);
    if (!in) throw InputError(file, "cannot open");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
        throw InputError(file, std::string("not valid JSON: ") + e.what());
    }
    Lesson l;
    l.dir = dir;
    l.id = dir.filename().string();
    try {
        take(j, "title", l.title);
        take(j, "summary", l.summary);
        take(j, "commands", l.commands);
        std::string trace, compare;
        take(j, "trace", trace);
        take(j, "compare", compare);
        if (l.title.empty()) throw InputError(file, "no \"title\"");
        l.trace = trace_in(file, dir, trace, "trace");
        if (!compare.empty()) l.compare = trace_in(file, dir, compare, "compare");
        if (!j.contains("script") || !j["script"].is_array() || j["script"].empty())
            throw InputError(file, "no \"script\" (an array of beats)");
        for (const nlohmann::json& b : j["script"]) {
            LessonStep s;
            take(b, "story", s.story);
            take(b, "text", s.beat.text);
            s.beat.step = b.value("step", int64_t{-1});  // -1: the previous beat's step
            take(b, "layer", s.beat.layer);
            take(b, "head", s.beat.head);
            take(b, "token", s.beat.token);
            take(b, "view", s.beat.view);
            if (!s.story && s.beat.text.empty())
                throw InputError(file, "a script beat has neither \"text\" nor \"story\": true");
            l.script.push_back(std::move(s));
        }
    } catch (const nlohmann::json::exception& e) {
        throw InputError(file, std::string("a field has the wrong type: ") + e.what());
    }
    return l;
}

std::vector<Lesson> list_lessons(const fs::path& root) {
    std::vector<Lesson> out;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root, ec))
        if (entry.is_directory() && fs::is_regular_file(entry.path() / "lesson.json"))
            out.push_back(load_lesson(entry.path()));
    std::sort(out.begin(), out.end(), [](const Lesson& a, const Lesson& b) { return a.id < b.id; });
    return out;
}

fs::path find_lessons_root(const std::vector<fs::path>& starts) {
    std::error_code ec;
    if (const char* env = std::getenv("KVSCOPE_LESSONS_DIR"); env && *env) return env;
    for (const fs::path& start : starts) {
        for (fs::path p = fs::absolute(start, ec); !p.empty(); p = p.parent_path()) {
            fs::path candidate = p / "resources" / "lessons";
            if (fs::is_directory(candidate, ec)) return candidate;
            if (p == p.parent_path()) break;
        }
    }
    return {};
}

std::vector<views::StoryBeat> lesson_beats(const Lesson& lesson,
                                           const std::vector<views::StoryBeat>& story) {
    std::vector<views::StoryBeat> out;
    bool spliced = false;
    for (const LessonStep& s : lesson.script) {
        if (s.story) {
            out.insert(out.end(), story.begin(), story.end());
            spliced = true;
            continue;
        }
        views::StoryBeat b = s.beat;
        if (b.step < 0) b.step = out.empty() ? 0 : out.back().step;
        out.push_back(std::move(b));
    }
    if (!spliced) out.insert(out.end(), story.begin(), story.end());
    return out;
}

}  // namespace kvscope::studio
