#pragma once
// Harness of the Studio's Qt Test binaries under Xvfb (test_gui_studio, test_gui_story,
// test_gui_presenter, test_gui_export): the process set-up every one of them needs, and a shown
// Studio window.
#include <QApplication>
#include <QSize>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "app/studio/main_window.h"

namespace kvscope::studio::testing {

// Runs the Qt Test object T the way the Studio runs: settings of the test run go to a throw-away
// folder, not the user's; GL contexts are shared (views move between docks and windows).
template <class T>
int run_studio_test(int argc, char** argv, const char* application_name) {
    QTemporaryDir config;
    qputenv("XDG_CONFIG_HOME", config.path().toLocal8Bit());
    QCoreApplication::setAttribute(Qt::AA_ShareOpenGLContexts);
    QApplication app(argc, argv);
    QApplication::setOrganizationName("KVScope");
    QApplication::setApplicationName(application_name);
    T test;
    return QTest::qExec(&test, argc, argv);
}

// Shows `window` at `size` without message boxes ("quiet": errors go to last_error()); true once
// the X server has exposed it.
inline bool show_quiet(MainWindow& window, QSize size) {
    window.setProperty("quiet", true);
    window.resize(size);
    window.show();
    return QTest::qWaitForWindowExposed(&window);
}

}  // namespace kvscope::studio::testing
