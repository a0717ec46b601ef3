#pragma once
// The command-line form of slide export (slide_export.h):
//   kvscope-studio TRACE --export-video out.mp4|out.gif [--view NAME] [--steps A:B] [--fps N]
//                  [--size WxH] [--scale K] [--force]
//   kvscope-studio TRACE --export-figure out.png|out.pdf|out.svg [--view NAME] [--step N]
//                  [--caption TEXT] [--size WxH] [--scale K] [--force]
// NAME is a view id (kvscope-studio --help lists them) or a unique part of one ("timeline").
// Usage errors exit 2, failures while exporting exit 1; an existing output is kept unless --force.
#include <QString>

class QCommandLineParser;

namespace kvscope::studio {

class MainWindow;

// Adds the options above that main() does not define itself (--step, --size, --scale are its).
void add_slide_export_options(QCommandLineParser& parser);
bool slide_export_requested(const QCommandLineParser& parser);
// Checks the flags against the open trace, exports once the window is up, and returns the exit
// status (messages on stderr).
int run_slide_export_cli(MainWindow& window, const QCommandLineParser& parser);

}  // namespace kvscope::studio
