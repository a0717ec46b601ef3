#pragma once
// "How to read this view": for every view (and the NIAH grid dock) a short title for dock tabs,
// and one paragraph a newcomer can read before looking at the view. The Studio shows them in
// Help > How to read the views and as tooltips on the views' titles (dock title bars and tabs).
#include <string_view>
#include <vector>

namespace kvscope::views {

struct ViewHelp {
    const char* id;           // View::id(), or "niah_grid"
    const char* title;        // the full title, as in the View menu
    const char* short_title;  // for dock tabs: short enough that nine fit at 1280 px and 1.5x
    const char* how_to_read;  // one paragraph, plain text
};

// Every entry, in menu order.
const std::vector<ViewHelp>& all_view_help();
// The entry of a view id; nullptr when unknown.
const ViewHelp* view_help(std::string_view id);

}  // namespace kvscope::views
