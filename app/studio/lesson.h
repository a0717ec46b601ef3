#pragma once
// Lessons (issue 16, item 3): a short teaching script plus the traces it needs, bundled under
// resources/lessons/<id>/lesson.json:
//   {"title": ..., "summary": ...,
//    "trace": "a.kvtrace.h5", "compare": "b.kvtrace.h5" (optional, opened as compare trace B),
//    "commands": ["kvscope run ... --trace resources/lessons/<id>/a.kvtrace.h5", ...],
//    "script": [{"text": ..., "step": 0, "layer": 3, "head": 0, "token": 171,
//                "view": "token_strip"},   every field but text optional
//               {"story": true},           the trace's generated story goes here
//               ...]}
// The commands are the exact ones that recorded the traces; tools/make_lessons.sh re-runs them.
// No Qt here: the loader is plain data (the GUI test and the Story dock use it).
#include <filesystem>
#include <string>
#include <vector>

#include "views/story.h"

namespace kvscope::studio {

struct LessonStep {
    views::StoryBeat beat;  // kind kOverview, fields -1 / "" where the script leaves them
    bool story = false;     // placeholder: the generated story is spliced in here
};

struct Lesson {
    std::string id;  // folder name
    std::filesystem::path dir;
    std::string title, summary;
    std::filesystem::path trace, compare;  // absolute; compare empty when none
    std::vector<std::string> commands;
    std::vector<LessonStep> script;
};

// Reads <dir>/lesson.json; throws InputError naming the file and the problem (missing fields,
// a trace that is not in the folder).
Lesson load_lesson(const std::filesystem::path& dir);

// Every lesson under `root` (sorted by id); folders without lesson.json are skipped, a broken
// lesson.json throws.
std::vector<Lesson> list_lessons(const std::filesystem::path& root);

// The bundled lessons folder: $KVSCOPE_LESSONS_DIR when set, else the first resources/lessons
// found in `starts` or one of their parents (the Studio passes its executable's folder and the
// working directory). Empty when none.
std::filesystem::path find_lessons_root(const std::vector<std::filesystem::path>& starts);

// The lesson's script with `story` spliced in at its placeholder (after the script when it has
// none). Script beats without a step take the step of the beat before them.
std::vector<views::StoryBeat> lesson_beats(const Lesson& lesson,
                                           const std::vector<views::StoryBeat>& story);

}  // namespace kvscope::studio
