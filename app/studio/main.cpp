// kvscope-studio: replays a KVScope trace. Usage:
//   kvscope-studio [run.kvtrace.h5] [--compare other.kvtrace.h5]
//   kvscope-studio run.kvtrace.h5 --export-views DIR [--scale 1] [--step N] [--layer L]
//                  [--head H] [--token T] [--theme light] [--size 1400x900]
//   kvscope-studio run.kvtrace.h5 --export-video out.mp4 --view NAME --steps A:B | --export-figure
//                  out.png|pdf|svg --view NAME --step N [--caption TEXT] [--size WxH] [--force]
// The second form writes DIR/<view>.png for every view and exits (used for docs screenshots).
// --compare opens a second trace of the same model and prompt in compare mode (both forms).
// The third form writes one view as a video or a slide figure (app/studio/slide_export_cli.h).
// --sweep DIR opens a `kvscope niah` sweep folder in the NIAH grid dock; with --export-views the
// grid is written as DIR/niah_grid.png too (no trace needed then).
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QTimer>

#include <algorithm>
#include <cstdio>

#include "app/studio/imgui_host_widget.h"
#include "app/studio/main_window.h"
#include "app/studio/slide_export_cli.h"
#include "app/studio/step_scrubber.h"
#include "app/studio/story_dock.h"
#include "app/studio/studio_theme.h"
#include "app/studio/sweep_dock.h"
#include "kvscope_version.h"
#include "traces/trace_probe.h"

int main(int argc, char** argv) {
    // Every trace the Studio opens is checked in a child process first (traces/trace_probe.h):
    // a file that crashes libhdf5 gets the error dialog instead of taking the Studio down.
    kvscope::trace::set_probe_untrusted_traces(true);
    QCoreApplication::setAttribute(Qt::AA_ShareOpenGLContexts);
    QApplication app(argc, argv);
    QApplication::setOrganizationName("KVScope");
    QApplication::setApplicationName("KVScope Studio");
    QApplication::setApplicationVersion(KVSCOPE_VERSION);

    QCommandLineParser parser;
    parser.setApplicationDescription("KVScope Studio: replay a KV-cache trace.");
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addPositionalArgument("trace", "Trace to open (.kvtrace.h5).", "[trace]");
    const QCommandLineOption export_opt("export-views",
                                        "Write every view as DIR/<view>.png and exit.", "DIR");
    const QCommandLineOption scale_opt("scale", "Export scale (default 2).", "k", "2");
    const QCommandLineOption step_opt("step", "Step to show.", "N");
    const QCommandLineOption layer_opt("layer", "Layer to select.", "L");
    const QCommandLineOption head_opt("head", "Head to select (-1 = all).", "H");
    const QCommandLineOption token_opt("token", "Token to select.", "T");
    const QCommandLineOption theme_opt("theme", "dark, light or contrast (projectors).", "name");
    const QCommandLineOption size_opt("size", "Window size, e.g. 1400x900.", "WxH");
    const QCommandLineOption compare_opt(
        "compare", "Compare with a second trace B (same model and prompt).", "B.kvtrace.h5");
    const QCommandLineOption window_opt(
        "window-shot", "With --export-views: also write the whole window to FILE.", "FILE");
    const QCommandLineOption sweep_opt(
        "sweep", "Open a kvscope niah sweep folder in the NIAH grid dock.", "DIR");
    parser.addOptions({export_opt, scale_opt, step_opt, layer_opt, head_opt, token_opt, theme_opt,
                       size_opt, compare_opt, window_opt, sweep_opt});
    kvscope::studio::add_slide_export_options(parser);
    kvscope::studio::add_lesson_option(parser);
    // Not parser.process(): a wrong flag is a usage error, exit status 2 as for kvscope.
    if (!parser.parse(QCoreApplication::arguments())) {
        std::fprintf(stderr, "kvscope-studio: %s\n", parser.errorText().toLocal8Bit().constData());
        return 2;
    }
    if (parser.isSet("help")) parser.showHelp(0);
    if (parser.isSet("version")) parser.showVersion();

    kvscope::studio::MainWindow window;
    const bool exporting =
        parser.isSet(export_opt) || kvscope::studio::slide_export_requested(parser);
    if (exporting) window.setProperty("quiet", true);
    if (parser.isSet(theme_opt))
        window.set_theme(kvscope::studio::theme_from_name(parser.value(theme_opt)));
    if (parser.isSet(size_opt)) {
        const QStringList wh = parser.value(size_opt).split('x');
        if (wh.size() == 2) window.resize(wh[0].toInt(), wh[1].toInt());
    }
    window.show();
    const QStringList args = parser.positionalArguments();
    if (!args.isEmpty() && !window.open_trace(args.first()) && exporting) {
        std::fprintf(stderr, "kvscope-studio: %s\n", window.last_error().toLocal8Bit().constData());
        return 1;
    }
    if (parser.isSet(compare_opt)) {
        if (args.isEmpty()) {
            std::fprintf(stderr, "kvscope-studio: --compare needs a trace to compare with\n");
            return 2;
        }
        if (window.model() && !window.open_compare(parser.value(compare_opt)) && exporting) {
            std::fprintf(stderr, "kvscope-studio: %s\n",
                         window.last_error().toLocal8Bit().constData());
            return 1;
        }
    }
    if (parser.isSet(sweep_opt) && !window.open_sweep(parser.value(sweep_opt)) && exporting) {
        std::fprintf(stderr, "kvscope-studio: %s\n", window.last_error().toLocal8Bit().constData());
        return 1;
    }
    if (!kvscope::studio::open_lesson_option(window, parser) && exporting) return 1;
    kvscope::views::ViewState& state = window.view_state();
    if (parser.isSet(layer_opt)) state.select_layer(parser.value(layer_opt).toInt());
    if (parser.isSet(head_opt)) state.select_head(parser.value(head_opt).toInt());
    if (parser.isSet(token_opt)) state.select_token(parser.value(token_opt).toLongLong());
    if (parser.isSet(step_opt)) window.set_step(parser.value(step_opt).toLongLong());
    if (window.model()) {
        state.clamp_to(window.model()->summary());
        // Compare mode: a step both traces have.
        state.set_step(std::min(state.step, std::max<int64_t>(window.step_count() - 1, 0)));
    }
    window.repaint_views();
    if (!exporting) return QApplication::exec();
    if (kvscope::studio::slide_export_requested(parser)) {
        return kvscope::studio::run_slide_export_cli(window, parser);
    }

    if (args.isEmpty() && !parser.isSet(sweep_opt) && !window.model()) {
        std::fprintf(stderr, "kvscope-studio: --export-views needs a trace, --lesson or --sweep\n");
        return 2;
    }
    int rc = 0;
    QTimer::singleShot(300, &app, [&] {
        if (parser.isSet(sweep_opt)) {
            // Two frames: ImGui sizes combo boxes in the first.
            kvscope::studio::ImGuiHostWidget* grid = window.sweep_dock()->host();
            const double scale = parser.value(scale_opt).toDouble();
            grid->render_image(scale);
            const QString file = QDir(parser.value(export_opt)).filePath("niah_grid.png");
            if (!QDir().mkpath(parser.value(export_opt)) ||
                !grid->render_image(scale).save(file, "PNG")) {
                std::fprintf(stderr, "kvscope-studio: cannot write %s\n",
                             file.toLocal8Bit().constData());
                rc = 1;
            }
        }
        if (window.model() && !window.export_all_views(parser.value(export_opt),
                                                       parser.value(scale_opt).toDouble())) {
            std::fprintf(stderr, "kvscope-studio: %s\n",
                         window.last_error().toLocal8Bit().constData());
            rc = 1;
        }
        if (parser.isSet(window_opt) && !window.grab().save(parser.value(window_opt), "PNG")) {
            std::fprintf(stderr, "kvscope-studio: cannot write %s\n",
                         parser.value(window_opt).toLocal8Bit().constData());
            rc = 1;
        }
        QApplication::quit();
    });
    QApplication::exec();
    return rc;
}
