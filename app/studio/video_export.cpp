#include "app/studio/video_export.h"

#include <QFile>
#include <QFileInfo>

#include <algorithm>
#include <array>
#include <exception>
#include <vector>

#include "traces/trace_output.h"

#ifdef KVSCOPE_HAVE_FFMPEG
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}
#endif

namespace kvscope::studio {

#ifdef KVSCOPE_HAVE_FFMPEG

namespace {

QString av_message(int code) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(code, buf, sizeof buf);
    return QString::fromUtf8(buf);
}

// One GIF frame as palette indices: the 256 most used colours of the frame, counted on a
// 5-5-5-bit grid. Each grid cell's entry is the mean of the pixels in it, so a flat colour (most
// of a view) comes back exact; every other cell maps to the nearest entry.
void quantise_to_palette(const QImage& rgb32, AVFrame* out) {
    constexpr int kCells = 1 << 15;
    const auto cell_of = [](QRgb p) {
        return ((qRed(p) >> 3) << 10) | ((qGreen(p) >> 3) << 5) | (qBlue(p) >> 3);
    };
    std::vector<uint32_t> count(kCells, 0);
    std::vector<std::array<uint64_t, 3>> sum(kCells, {0, 0, 0});
    for (int y = 0; y < rgb32.height(); ++y) {
        const auto* row = reinterpret_cast<const QRgb*>(rgb32.constScanLine(y));
        for (int x = 0; x < rgb32.width(); ++x) {
            const int c = cell_of(row[x]);
            ++count[static_cast<size_t>(c)];
            sum[static_cast<size_t>(c)][0] += static_cast<uint64_t>(qRed(row[x]));
            sum[static_cast<size_t>(c)][1] += static_cast<uint64_t>(qGreen(row[x]));
            sum[static_cast<size_t>(c)][2] += static_cast<uint64_t>(qBlue(row[x]));
        }
    }
    std::vector<int> used;
    for (int c = 0; c < kCells; ++c) {
        if (count[static_cast<size_t>(c)] > 0) used.push_back(c);
    }
    const size_t n = std::min<size_t>(used.size(), 256);
    std::partial_sort(used.begin(), used.begin() + static_cast<std::ptrdiff_t>(n), used.end(),
                      [&](int a, int b) {
                          return count[static_cast<size_t>(a)] > count[static_cast<size_t>(b)];
                      });
    std::array<std::array<int, 3>, 256> entry{};
    auto* palette = reinterpret_cast<uint32_t*>(out->data[1]);  // native-endian 0xAARRGGBB
    for (size_t i = 0; i < 256; ++i) {
        if (i < n) {
            const size_t c = static_cast<size_t>(used[i]);
            for (int k = 0; k < 3; ++k) {
                entry[i][static_cast<size_t>(k)] =
                    static_cast<int>(sum[c][static_cast<size_t>(k)] / count[c]);
            }
        }
        palette[i] = 0xff000000u | (static_cast<uint32_t>(entry[i][0]) << 16) |
                     (static_cast<uint32_t>(entry[i][1]) << 8) | static_cast<uint32_t>(entry[i][2]);
    }
    // Cell -> palette index, reusing `count` as the table.
    for (int c : used) {
        const size_t cell = static_cast<size_t>(c);
        int best = 0;
        int64_t best_d = INT64_MAX;
        for (size_t i = 0; i < std::max<size_t>(n, 1); ++i) {
            int64_t d = 0;
            for (size_t k = 0; k < 3; ++k) {
                const int64_t diff = static_cast<int64_t>(sum[cell][k] / count[cell]) - entry[i][k];
                d += diff * diff;
            }
            if (d < best_d) {
                best_d = d;
                best = static_cast<int>(i);
            }
        }
        count[cell] = static_cast<uint32_t>(best);
    }
    for (int y = 0; y < rgb32.height(); ++y) {
        const auto* row = reinterpret_cast<const QRgb*>(rgb32.constScanLine(y));
        uint8_t* dst = out->data[0] + static_cast<ptrdiff_t>(y) * out->linesize[0];
        for (int x = 0; x < rgb32.width(); ++x) {
            dst[x] = static_cast<uint8_t>(count[static_cast<size_t>(cell_of(row[x]))]);
        }
    }
}

}  // namespace

struct VideoEncoder::State {
    AVFormatContext* format = nullptr;
    AVCodecContext* codec = nullptr;
    AVStream* stream = nullptr;
    AVFrame* frame = nullptr;
    AVPacket* packet = nullptr;
    SwsContext* sws = nullptr;
    bool gif = false;
    bool header_written = false;
    QString part;  // the file being written

    ~State() {
        sws_freeContext(sws);
        av_packet_free(&packet);
        av_frame_free(&frame);
        avcodec_free_context(&codec);
        if (format) {
            if (format->pb) avio_closep(&format->pb);
            avformat_free_context(format);
        }
    }

    // Sends `f` (nullptr: flush) and writes every packet the encoder has ready. AVERROR code.
    int encode(const AVFrame* f) {
        int rc = avcodec_send_frame(codec, f);
        if (rc < 0) return rc;
        for (;;) {
            rc = avcodec_receive_packet(codec, packet);
            if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return 0;
            if (rc < 0) return rc;
            // One frame per step: every packet lasts one tick. Encoders do not all say so, and
            // the MP4 muxer gives a packet without a duration none, so players drop the last frame.
            if (packet->duration <= 0) packet->duration = 1;
            av_packet_rescale_ts(packet, codec->time_base, stream->time_base);
            packet->stream_index = stream->index;
            rc = av_interleaved_write_frame(format, packet);  // takes the packet's data
            if (rc < 0) return rc;
        }
    }
};

bool VideoEncoder::available() {
    return true;
}

bool VideoEncoder::open(const QString& path, int width, int height, int fps, bool overwrite) {
    s_.reset();
    frames_ = 0;
    path_ = path;
    overwrite_ = overwrite;
    const QString ext = QFileInfo(path).suffix().toLower();
    if (ext != "mp4" && ext != "gif") {
        return fail(QStringLiteral("unknown video format '.%1' (use .mp4 or .gif)").arg(ext));
    }
    if (width <= 0 || height <= 0 || fps <= 0) return fail("the video size and rate must be > 0");
    if (ext == "mp4" && (width % 2 != 0 || height % 2 != 0)) {
        return fail(QStringLiteral("an MP4's width and height must be even (got %1x%2)")
                        .arg(width)
                        .arg(height));
    }
    try {
        trace::refuse_existing_output(path.toStdString(), overwrite);
    } catch (const std::exception& e) {
        error_ = QString::fromStdString(e.what());
        return false;
    }
    s_ = std::make_unique<State>();
    State& s = *s_;
    s.gif = ext == "gif";
    s.part = path + QString::fromUtf8(trace::kRecordingSuffix);

    const AVCodec* codec = nullptr;
    if (s.gif) {
        codec = avcodec_find_encoder(AV_CODEC_ID_GIF);
    } else {
        // KVSCOPE_MP4_ENCODER=mpeg4 skips libx264 (its GPL licence, or to test the fallback).
        const QByteArray wanted = qgetenv("KVSCOPE_MP4_ENCODER");
        if (!wanted.isEmpty() && wanted != "libx264" && wanted != "mpeg4") {
            return fail("KVSCOPE_MP4_ENCODER=" + QString::fromLocal8Bit(wanted) +
                        ": expected libx264 or mpeg4");
        }
        if (wanted != "mpeg4") codec = avcodec_find_encoder_by_name("libx264");
        if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    }
    if (!codec) return fail("the installed libavcodec has no encoder for this format");
    codec_ = QString::fromUtf8(codec->name);

    // The format is named, not guessed from the file name, because we write to PATH.part.
    int rc = avformat_alloc_output_context2(&s.format, nullptr, s.gif ? "gif" : "mp4",
                                            s.part.toLocal8Bit().constData());
    if (rc < 0 || !s.format) return fail("cannot set up the container: " + av_message(rc));
    s.stream = avformat_new_stream(s.format, nullptr);
    s.codec = avcodec_alloc_context3(codec);
    s.frame = av_frame_alloc();
    s.packet = av_packet_alloc();
    if (!s.stream || !s.codec || !s.frame || !s.packet) return fail("out of memory");

    s.codec->width = width;
    s.codec->height = height;
    s.codec->time_base = AVRational{1, fps};
    s.codec->framerate = AVRational{fps, 1};
    s.codec->pix_fmt = s.gif ? AV_PIX_FMT_PAL8 : AV_PIX_FMT_YUV420P;
    if (s.gif) {
        // Whole frames, no transparency tricks: every frame carries its own palette, and the
        // encoder's diffing against the previous frame would compare indices of two palettes.
        av_opt_set(s.codec->priv_data, "gifflags", "0", 0);
    } else {
        // Text and thin lines must stay legible on a projector: favour quality over size.
        s.codec->gop_size = fps * 2;
        s.codec->color_range = AVCOL_RANGE_MPEG;
        s.codec->colorspace = AVCOL_SPC_SMPTE170M;  // what swscale's RGB->YUV default computes
        if (codec_ == "libx264") {
            av_opt_set(s.codec->priv_data, "crf", "18", 0);
            av_opt_set(s.codec->priv_data, "preset", "medium", 0);
        } else {
            s.codec->flags |= AV_CODEC_FLAG_QSCALE;
            s.codec->global_quality = FF_QP2LAMBDA * 2;
        }
    }
    if (s.format->oformat->flags & AVFMT_GLOBALHEADER) {
        s.codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    }
    rc = avcodec_open2(s.codec, codec, nullptr);
    if (rc < 0)
        return fail(QStringLiteral("cannot open the %1 encoder: %2").arg(codec_, av_message(rc)));
    rc = avcodec_parameters_from_context(s.stream->codecpar, s.codec);
    if (rc < 0) return fail("cannot set the stream parameters: " + av_message(rc));
    s.stream->time_base = s.codec->time_base;

    s.frame->format = s.codec->pix_fmt;
    s.frame->width = width;
    s.frame->height = height;
    rc = av_frame_get_buffer(s.frame, 0);
    if (rc < 0) return fail("cannot allocate a frame: " + av_message(rc));
    if (!s.gif) {
        s.sws = sws_getContext(width, height, AV_PIX_FMT_RGB32, width, height, AV_PIX_FMT_YUV420P,
                               SWS_BICUBIC, nullptr, nullptr, nullptr);
        if (!s.sws) return fail("cannot set up the colour conversion");
    }

    // A stale PATH.part of an earlier interrupted export is ours to replace.
    rc = avio_open(&s.format->pb, s.part.toLocal8Bit().constData(), AVIO_FLAG_WRITE);
    if (rc < 0) {
        return fail(QStringLiteral("cannot write %1: %2").arg(s.part, av_message(rc)));
    }
    rc = avformat_write_header(s.format, nullptr);
    if (rc < 0) return fail("cannot write the header: " + av_message(rc));
    s.header_written = true;
    return true;
}

bool VideoEncoder::add_frame(const QImage& image) {
    if (!s_ || !s_->header_written) return fail("the video is not open");
    State& s = *s_;
    if (image.isNull()) return fail("an empty frame");
    // QImage::Format_RGB32 is one native-endian 0xffRRGGBB per pixel: AV_PIX_FMT_RGB32 names
    // exactly that on either endianness, and the palette path reads the same 32-bit values.
    QImage rgb = image.convertToFormat(QImage::Format_RGB32);
    if (rgb.width() != s.codec->width || rgb.height() != s.codec->height) {
        rgb = rgb.scaled(s.codec->width, s.codec->height, Qt::IgnoreAspectRatio,
                         Qt::SmoothTransformation);
    }
    int rc = av_frame_make_writable(s.frame);
    if (rc < 0) return fail("cannot reuse the frame buffer: " + av_message(rc));
    if (s.gif) {
        quantise_to_palette(rgb, s.frame);
    } else {
        const uint8_t* src[1] = {rgb.constBits()};
        const int stride[1] = {static_cast<int>(rgb.bytesPerLine())};
        sws_scale(s.sws, src, stride, 0, rgb.height(), s.frame->data, s.frame->linesize);
    }
    if (!s.gif && codec_ != "libx264") s.frame->quality = s.codec->global_quality;
    s.frame->pts = frames_;
    rc = s.encode(s.frame);
    if (rc < 0)
        return fail("cannot encode frame " + QString::number(frames_) + ": " + av_message(rc));
    ++frames_;
    return true;
}

bool VideoEncoder::finish() {
    if (!s_ || !s_->header_written) return fail("the video is not open");
    State& s = *s_;
    int rc = s.encode(nullptr);
    if (rc < 0) return fail("cannot flush the encoder: " + av_message(rc));
    rc = av_write_trailer(s.format);
    if (rc < 0) return fail("cannot write the trailer: " + av_message(rc));
    rc = avio_closep(&s.format->pb);
    if (rc < 0) return fail("cannot close the file: " + av_message(rc));
    const QString part = s.part;
    s_.reset();
    try {
        trace::move_into_place(part.toStdString(), path_.toStdString(), overwrite_);
    } catch (const std::exception& e) {
        error_ = QString::fromStdString(e.what());
        QFile::remove(part);
        return false;
    }
    return true;
}

#else  // !KVSCOPE_HAVE_FFMPEG

struct VideoEncoder::State {
    QString part;
};

bool VideoEncoder::available() {
    return false;
}

bool VideoEncoder::open(const QString& path, int, int, int, bool) {
    path_ = path;
    return fail(
        "video export is not available: KVScope Studio was built without FFmpeg "
        "(install libavcodec-dev libavformat-dev libavutil-dev libswscale-dev and "
        "reconfigure)");
}

bool VideoEncoder::add_frame(const QImage&) {
    return fail("the video is not open");
}

bool VideoEncoder::finish() {
    return fail("the video is not open");
}

#endif

VideoEncoder::VideoEncoder() = default;

VideoEncoder::~VideoEncoder() {
    // An unfinished export leaves nothing behind under the requested name; drop its .part too.
    if (s_ && !s_->part.isEmpty()) {
        const QString part = s_->part;
        s_.reset();
        QFile::remove(part);
    }
}

bool VideoEncoder::fail(const QString& problem) {
    error_ = path_ + ": " + problem;
    if (s_ && !s_->part.isEmpty()) {
        const QString part = s_->part;
        s_.reset();
        QFile::remove(part);
    }
    return false;
}

}  // namespace kvscope::studio
