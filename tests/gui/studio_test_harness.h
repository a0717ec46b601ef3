#pragma once
// Harness of the Studio's Qt Test binaries under Xvfb (test_gui_studio, test_gui_story,
// test_gui_presenter, test_gui_export): the process set-up every one of them needs, and a shown
// Studio window.
#include <QApplication>
#include <QMetaMethod>
#include <QSize>
#include <QStringList>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <cstdio>

#include "app/studio/main_window.h"

namespace kvscope::studio::testing {

// The test functions of shard "I/N" (KVSCOPE_TEST_SHARD; kvscope_studio_test's SHARDS): the I-th
// of N contiguous blocks of the class's test functions in declaration order, so that ctest -j can
// run one long binary on several cores and every function runs in exactly one block. Functions
// that set up what later ones use are named in the class's Q_CLASSINFO("shard_setup", "a b ...")
// (default: the first function); a shard runs those declared before its block first, so each
// shard runs a subsequence of the unsharded order. Empty message: fine; else what is wrong.
inline QString shard_functions(const QMetaObject& meta, const QByteArray& spec,
                               QStringList& functions) {
    const QList<QByteArray> parts = spec.split('/');
    bool ok_i = false, ok_n = false;
    const int i = parts.value(0).toInt(&ok_i), n = parts.value(1).toInt(&ok_n);
    if (parts.size() != 2 || !ok_i || !ok_n || n < 1 || i < 0 || i >= n)
        return "expected I/N with 0 <= I < N";
    QStringList all;  // Qt Test's rule: private slots without arguments, minus the fixtures
    for (int m = meta.methodOffset(); m < meta.methodCount(); ++m) {
        const QMetaMethod method = meta.method(m);
        const QByteArray name = method.name();
        if (method.methodType() != QMetaMethod::Slot || method.access() != QMetaMethod::Private ||
            method.parameterCount() != 0 || name == "initTestCase" || name == "cleanupTestCase" ||
            name == "init" || name == "cleanup" || name.endsWith("_data"))
            continue;
        all << QString::fromLatin1(name);
    }
    if (all.isEmpty()) return "no test functions";
    QStringList setup{all.front()};
    if (const int k = meta.indexOfClassInfo("shard_setup"); k >= 0)
        setup = QString::fromLatin1(meta.classInfo(k).value()).split(' ', Qt::SkipEmptyParts);
    const qsizetype begin = all.size() * i / n, end = all.size() * (i + 1) / n;
    functions.clear();
    for (const QString& f : setup) {
        const qsizetype at = all.indexOf(f);
        if (at < 0) return "shard_setup names " + f + ", which is no test function";
        if (at < begin) functions << f;
    }
    functions += all.mid(begin, end - begin);
    return {};
}

// Runs the Qt Test object T the way the Studio runs: settings of the test run go to a throw-away
// folder, not the user's; GL contexts are shared (views move between docks and windows). With
// KVSCOPE_TEST_SHARD=I/N set, only that shard's functions run (shard_functions).
template <class T>
int run_studio_test(int argc, char** argv, const char* application_name) {
    QTemporaryDir config;
    qputenv("XDG_CONFIG_HOME", config.path().toLocal8Bit());
    QCoreApplication::setAttribute(Qt::AA_ShareOpenGLContexts);
    QApplication app(argc, argv);
    QApplication::setOrganizationName("KVScope");
    QApplication::setApplicationName(application_name);
    T test;
    QStringList args;  // argv as QApplication left it (its own options taken out)
    for (int k = 0; k < argc; ++k) args << QString::fromLocal8Bit(argv[k]);
    if (const QByteArray spec = qgetenv("KVSCOPE_TEST_SHARD"); !spec.isEmpty()) {
        QStringList functions;
        if (const QString error = shard_functions(T::staticMetaObject, spec, functions);
            !error.isEmpty()) {
            std::fprintf(stderr, "KVSCOPE_TEST_SHARD=%s: %s\n", spec.constData(),
                         qPrintable(error));
            return 2;
        }
        args += functions;
    }
    return QTest::qExec(&test, args);
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
