// Export for slides and talks under Xvfb (Qt Test): kvscope-studio --export-video and
// --export-figure on the sample trace, and the same export from a MainWindow (what File > Export
// video runs). Every video is decoded back with libavformat/libavcodec (a real file, real
// decoders) and its frame count and frame size are checked; the GIF's colours are compared with
// the PNG figure of the same step; figures are read back as PNG, PDF and SVG.
#include <QAction>
#include <QApplication>
#include <QComboBox>
#include <QFile>
#include <QFileDialog>
#include <QImage>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QProcess>
#include <QRegularExpression>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTimer>
#include <QXmlStreamReader>
#include <QtTest/QtTest>

#include <cmath>
#include <cstdlib>

#include "app/studio/main_window.h"
#include "app/studio/slide_export.h"
#include "app/studio/slide_export_dialog.h"
#include "tests/gui/studio_test_harness.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}

using kvscope::studio::MainWindow;

namespace {

const QString kSample = QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/sample/sample.kvtrace.h5");
constexpr int kSampleSteps = 16;  // `kvscope inspect resources/sample/sample.kvtrace.h5`

struct Decoded {
    int frames = 0;
    int width = 0;
    int height = 0;
    QString codec;
    QImage last;  // the last frame as RGB32
    QString error;
};

// Demuxes and decodes every frame of the first video stream.
Decoded decode_video(const QString& path) {
    Decoded d;
    AVFormatContext* fmt = nullptr;
    if (avformat_open_input(&fmt, path.toLocal8Bit().constData(), nullptr, nullptr) < 0) {
        d.error = "cannot open " + path;
        return d;
    }
    AVCodecContext* dec = nullptr;
    AVPacket* pkt = av_packet_alloc();
    AVFrame* frame = av_frame_alloc();
    const AVCodec* codec = nullptr;
    const int stream = avformat_find_stream_info(fmt, nullptr) < 0
                           ? -1
                           : av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (stream < 0 || !codec) {
        d.error = "no video stream in " + path;
    } else {
        d.codec = QString::fromUtf8(codec->name);
        dec = avcodec_alloc_context3(codec);
        avcodec_parameters_to_context(dec, fmt->streams[stream]->codecpar);
        if (avcodec_open2(dec, codec, nullptr) < 0) d.error = "cannot open the decoder";
    }
    const auto drain = [&] {
        while (avcodec_receive_frame(dec, frame) == 0) {
            ++d.frames;
            d.width = frame->width;
            d.height = frame->height;
            d.last = QImage(frame->width, frame->height, QImage::Format_RGB32);
            SwsContext* sws = sws_getContext(frame->width, frame->height,
                                             static_cast<AVPixelFormat>(frame->format),
                                             frame->width, frame->height, AV_PIX_FMT_RGB32,
                                             SWS_BICUBIC, nullptr, nullptr, nullptr);
            uint8_t* dst[1] = {d.last.bits()};
            const int stride[1] = {static_cast<int>(d.last.bytesPerLine())};
            sws_scale(sws, frame->data, frame->linesize, 0, frame->height, dst, stride);
            sws_freeContext(sws);
        }
    };
    while (d.error.isEmpty() && av_read_frame(fmt, pkt) >= 0) {
        if (pkt->stream_index == stream && avcodec_send_packet(dec, pkt) >= 0) drain();
        av_packet_unref(pkt);
    }
    if (d.error.isEmpty()) {
        avcodec_send_packet(dec, nullptr);  // flush: B-frames and the encoder's delay
        drain();
    }
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return d;
}

// Mean absolute difference per channel (0-255) of two images of one size.
double mean_difference(const QImage& a, const QImage& b) {
    const QImage x = a.convertToFormat(QImage::Format_RGB32);
    const QImage y = b.convertToFormat(QImage::Format_RGB32);
    double sum = 0;
    for (int r = 0; r < x.height(); ++r) {
        const auto* p = reinterpret_cast<const QRgb*>(x.constScanLine(r));
        const auto* q = reinterpret_cast<const QRgb*>(y.constScanLine(r));
        for (int c = 0; c < x.width(); ++c) {
            sum += std::abs(qRed(p[c]) - qRed(q[c])) + std::abs(qGreen(p[c]) - qGreen(q[c])) +
                   std::abs(qBlue(p[c]) - qBlue(q[c]));
        }
    }
    return sum / (3.0 * x.width() * x.height());
}

}  // namespace

class ExportTest : public QObject {
    Q_OBJECT

    QTemporaryDir out_;

    // Runs kvscope-studio on the sample trace with `args`; returns the exit status.
    int studio(const QStringList& args, QString* err = nullptr) {
        QProcess p;
        p.setProcessChannelMode(QProcess::SeparateChannels);
        p.start(QStringLiteral(KVSCOPE_STUDIO_EXE), QStringList{kSample} + args);
        const bool finished = p.waitForFinished(120000);
        const QString e = QString::fromLocal8Bit(p.readAllStandardError());
        if (err) *err = e;
        if (!finished || p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0) {
            qInfo("kvscope-studio %s: %s%s", qPrintable(args.join(' ')),
                  p.exitStatus() == QProcess::NormalExit ? "" : "crashed: ", qPrintable(e));
        }
        return finished && p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    }
    QString out(const QString& name) const { return out_.filePath(name); }

  private slots:
    void initTestCase() {
        QVERIFY(out_.isValid());
        QVERIFY2(QFile::exists(kSample), qPrintable(kSample));
    }

    void mp4FromTheCommandLine() {
        const QString mp4 = out("timeline.mp4");
        QCOMPARE(studio({"--export-video", mp4, "--view", "timeline", "--steps", "2:7", "--size",
                         "320x240", "--fps", "5"}),
                 0);
        const Decoded d = decode_video(mp4);
        QVERIFY2(d.error.isEmpty(), qPrintable(d.error));
        QCOMPARE(d.frames, 6);  // steps 2..7, one frame each
        QCOMPARE(d.width, 320);
        QCOMPARE(d.height, 240);
        QVERIFY2(d.codec == "h264" || d.codec == "mpeg4", qPrintable(d.codec));
        QVERIFY(!QFile::exists(mp4 + ".part"));
    }

    // Where libavcodec has no libx264 the native MPEG-4 encoder writes the MP4.
    void mp4WithTheNativeEncoder() {
        const QString mp4 = out("density_mpeg4.mp4");
        qputenv("KVSCOPE_MP4_ENCODER", "mpeg4");  // inherited by the kvscope-studio process
        const int rc = studio({"--export-video", mp4, "--view", "density", "--steps", "0:15",
                               "--size", "480x270", "--fps", "8"});
        qunsetenv("KVSCOPE_MP4_ENCODER");
        QCOMPARE(rc, 0);
        const Decoded d = decode_video(mp4);
        QVERIFY2(d.error.isEmpty(), qPrintable(d.error));
        QCOMPARE(d.codec, QString("mpeg4"));
        QCOMPARE(d.frames, kSampleSteps);
        QCOMPARE(QSize(d.width, d.height), QSize(480, 270));
    }

    void gifMatchesTheFigureOfItsLastStep() {
        const QString gif = out("strip.gif");
        const QString png = out("strip_step4.png");
        QCOMPARE(studio({"--export-video", gif, "--view", "token_strip", "--steps", "0:4", "--size",
                         "400x300"}),
                 0);
        QCOMPARE(studio({"--export-figure", png, "--view", "token_strip", "--step", "4", "--size",
                         "400x300"}),
                 0);
        const Decoded d = decode_video(gif);
        QVERIFY2(d.error.isEmpty(), qPrintable(d.error));
        QCOMPARE(d.codec, QString("gif"));
        QCOMPARE(d.frames, 5);
        QCOMPARE(d.width, 400);
        QCOMPARE(d.height, 300);
        const QImage figure(png);
        QCOMPARE(figure.size(), QSize(400, 300));
        // The GIF's palette (256 most used colours of a 5-5-5 grid) changes only anti-aliased
        // pixels: on average less than 3 of 255 per channel. A palette applied to the wrong frame
        // or a shifted picture differs by tens.
        const double diff = mean_difference(d.last, figure);
        QVERIFY2(diff < 3.0, qPrintable(QString("mean difference %1").arg(diff)));
    }

    void pngFigureHasItsCaptionBand() {
        const QString png = out("layer_head.png");
        QCOMPARE(studio({"--export-figure", png, "--view", "layer_head", "--step", "3", "--size",
                         "960x540", "--caption", "D2O keeps the sinks and the recent window"}),
                 0);
        const QImage img(png);
        QCOMPARE(img.size(), QSize(960, 540));
        // The band is 8% of the height (43 px) under the view: its left edge is plain, its middle
        // holds the text.
        const int band_top = 540 - 43;
        const QRgb bg = img.pixel(2, 538);
        int text = 0;
        for (int y = band_top + 2; y < 538; ++y) {
            QCOMPARE(img.pixel(2, y), bg);
            for (int x = 200; x < 760; ++x) text += img.pixel(x, y) != bg ? 1 : 0;
        }
        QVERIFY2(text > 500, qPrintable(QString("%1 caption pixels").arg(text)));
    }

    void pdfAndSvgFigures() {
        const QString pdf = out("budgets.pdf");
        const QString svg = out("budgets.svg");
        const QStringList common = {"--view", "budgets", "--step",    "5",
                                    "--size", "960x540", "--caption", "Budgets <per layer> & head"};
        QCOMPARE(studio(QStringList{"--export-figure", pdf} + common), 0);
        QCOMPARE(studio(QStringList{"--export-figure", svg} + common), 0);
        QFile p(pdf);
        QVERIFY(p.open(QIODevice::ReadOnly));
        const QByteArray bytes = p.readAll();
        QVERIFY(bytes.startsWith("%PDF-"));
        // The page is 960x540 px at 96 dpi = 720x405 points (+-0.01, as Qt prints them).
        const QRegularExpressionMatch box =
            QRegularExpression("/MediaBox \\[0 0 ([0-9.]+) ([0-9.]+)\\]")
                .match(QString::fromLatin1(bytes));
        QVERIFY(box.hasMatch());
        QVERIFY(std::abs(box.captured(1).toDouble() - 720.0) < 0.01);
        QVERIFY(std::abs(box.captured(2).toDouble() - 405.0) < 0.01);
        QVERIFY2(bytes.size() > 20000, "the view is embedded as an image");

        QFile s(svg);
        QVERIFY(s.open(QIODevice::ReadOnly));
        QXmlStreamReader xml(&s);
        int svgs = 0, shapes = 0;
        QString caption, width;
        while (!xml.atEnd()) {
            if (xml.readNext() != QXmlStreamReader::StartElement) continue;
            if (xml.name() == QLatin1String("svg") && ++svgs == 1) {
                width = xml.attributes().value("width").toString();
            }
            const auto name = xml.name();
            if (name == QLatin1String("rect") || name == QLatin1String("line") ||
                name == QLatin1String("polyline")) {
                ++shapes;
            }
            if (xml.name() == QLatin1String("text") && xml.attributes().hasAttribute("text-anchor"))
                caption = xml.readElementText();
        }
        QVERIFY2(!xml.hasError(), qPrintable(xml.errorString()));
        QCOMPARE(width, QString("960"));
        QCOMPARE(svgs, 2);  // the figure and the view's own drawing nested in it
        // Plot panels, axes and ticks, one budget curve per layer group: 31 shapes at step 5; a
        // raster-only or empty drawing would have 2 (the backgrounds).
        QVERIFY2(shapes >= 20, qPrintable(QString("%1 shapes").arg(shapes)));
        QCOMPARE(caption, QString("Budgets <per layer> & head"));
    }

    void refusesBadFlagsAndExistingFiles() {
        const QString mp4 = out("timeline.mp4");  // written by mp4FromTheCommandLine
        QVERIFY(QFile::exists(mp4));
        const qint64 size = QFileInfo(mp4).size();
        QString err;
        QCOMPARE(studio({"--export-video", mp4, "--view", "timeline", "--steps", "0:1"}, &err), 2);
        QVERIFY2(err.contains("already exists") && err.contains("--force"), qPrintable(err));
        QCOMPARE(QFileInfo(mp4).size(), size);
        QCOMPARE(studio({"--export-video", mp4, "--view", "timeline", "--steps", "0:1", "--size",
                         "160x120", "--force"}),
                 0);
        QCOMPARE(decode_video(mp4).frames, 2);

        const QString fresh = out("fresh.mp4");
        QCOMPARE(studio({"--export-video", fresh, "--no-such-flag"}, &err), 2);
        QCOMPARE(studio({"--export-video", fresh, "--view", "nope"}, &err), 2);
        QVERIFY2(err.contains("token_strip"), "lists the views");
        QCOMPARE(studio({"--export-video", fresh, "--steps", "5:2"}), 2);
        QCOMPARE(studio({"--export-video", fresh, "--steps", QString("0:%1").arg(kSampleSteps)}),
                 2);
        QCOMPARE(studio({"--export-video", fresh, "--size", "321x240"}), 2);
        QCOMPARE(studio({"--export-video", out("x.avi")}), 2);
        QCOMPARE(studio({"--export-figure", out("x.jpg")}), 2);
        QCOMPARE(studio({"--export-figure", out("x.png"), "--steps", "1:2"}), 2);
        QVERIFY(!QFile::exists(fresh));
    }

    void exportFromTheWindow() {
        MainWindow window;
        QVERIFY(kvscope::studio::testing::show_quiet(window, QSize(1200, 760)));
        QVERIFY2(window.open_trace(kSample), qPrintable(window.last_error()));
        bool has_video_action = false, has_figure_action = false;
        for (QAction* a : window.menuBar()->findChildren<QAction*>()) {
            has_video_action = has_video_action || a->text().startsWith("Export &video");
            has_figure_action = has_figure_action || a->text().startsWith("Export &figure");
        }
        QVERIFY(has_video_action && has_figure_action);
        window.set_step(9);
        kvscope::studio::SlideExportOptions o;
        o.view = window.view_index("precision");
        QVERIFY(o.view >= 0);
        o.first_step = 11;
        o.last_step = 15;
        o.size = QSize(640, 360);
        const QString gif = out("window.gif");
        QString error;
        int progress_calls = 0;
        QVERIFY2(kvscope::studio::export_slide_video(window, gif, o, &error,
                                                     [&](int64_t done, int64_t total) {
                                                         ++progress_calls;
                                                         return done <= total;
                                                     }),
                 qPrintable(error));
        QCOMPARE(progress_calls, 5);
        QCOMPARE(window.view_state().step, int64_t{9});  // the window is back where it was
        const Decoded d = decode_video(gif);
        QCOMPARE(d.frames, 5);
        QCOMPARE(QSize(d.width, d.height), QSize(640, 360));
        // Cancelling removes the unfinished file.
        const QString cancelled = out("cancelled.mp4");
        QVERIFY(!kvscope::studio::export_slide_video(
            window, cancelled, o, &error, [](int64_t done, int64_t) { return done < 2; }));
        QVERIFY(error.contains("cancelled"));
        QVERIFY(!QFile::exists(cancelled) && !QFile::exists(cancelled + ".part"));
    }

    // File > Export figure...: the dialog (view, step, size, caption), then the file dialog.
    void exportFigureFromTheMenu() {
        MainWindow window;
        QVERIFY(kvscope::studio::testing::show_quiet(window, QSize(1200, 760)));
        QVERIFY2(window.open_trace(kSample), qPrintable(window.last_error()));
        window.set_step(6);
        QAction* action = nullptr;
        for (QAction* a : window.menuBar()->findChildren<QAction*>()) {
            if (a->text().startsWith("Export &figure")) action = a;
        }
        QVERIFY(action);
        const QString png = out("menu_figure.png");
        bool saw_dialog = false, saw_file_dialog = false;
        int dialog_step = -1;
        QTimer::singleShot(300, this, [&] {
            auto* d = qobject_cast<kvscope::studio::SlideExportDialog*>(
                QApplication::activeModalWidget());
            if (!d) return;
            saw_dialog = true;
            dialog_step = d->first_box()->value();  // the window's step
            d->view_box()->setCurrentIndex(window.view_index("layer_head"));
            for (QLineEdit* e : d->findChildren<QLineEdit*>()) {
                if (e->text() == "1920x1080") e->setText("800x450");
            }
            QTimer::singleShot(300, this, [&] {
                auto* f = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
                if (!f) return;
                saw_file_dialog = true;
                // The name field of Qt's own dialog (selectFile keeps the suggested name when
                // the file does not exist yet).
                f->setDirectory(out_.path());
                if (auto* name = f->findChild<QLineEdit*>("fileNameEdit"))
                    name->setText("menu_figure.png");
                static_cast<QDialog*>(f)->accept();  // QFileDialog::accept is protected
            });
            d->accept();
        });
        // A dialog the steps above did not find is closed after 20 s instead of hanging the test.
        QTimer guard;
        guard.setSingleShot(true);
        connect(&guard, &QTimer::timeout, this, [] {
            while (auto* m = qobject_cast<QDialog*>(QApplication::activeModalWidget())) m->reject();
        });
        guard.start(20000);
        action->trigger();
        QVERIFY(saw_dialog);
        QCOMPARE(dialog_step, 6);
        QVERIFY(saw_file_dialog);
        for (QMessageBox* box : window.findChildren<QMessageBox*>()) {
            QFAIL(qPrintable(box->text()));  // File > Export shows failures in a message box
        }
        const QImage img(png);
        QCOMPARE(img.size(), QSize(800, 450));
        QCOMPARE(window.view_state().step, int64_t{6});
    }
};

int main(int argc, char** argv) {
    return kvscope::studio::testing::run_studio_test<ExportTest>(argc, argv,
                                                                 "KVScope Studio Export Test");
}

#include "export_test.moc"
