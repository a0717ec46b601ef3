#pragma once
// VideoEncoder: writes frames (QImages of one size) as an MP4 or an animated GIF through FFmpeg's
// libraries (libavformat/libavcodec/libswscale), never through an ffmpeg program on PATH.
//   .mp4: H.264 (libx264) when that encoder is in the installed libavcodec, else the native MPEG-4
//         Part 2 encoder (also when KVSCOPE_MP4_ENCODER=mpeg4); yuv420p, so width and height
//         must be even.
//   .gif: the native GIF encoder on 8-bit palette frames; each frame gets its own palette of the
//         colours it uses most (views are drawn in few flat colours, so this keeps them exact).
// The file is written to PATH.part and moved onto PATH by finish(), so a failed or interrupted
// export never leaves a half-written video under the requested name.
// Without FFmpeg at build time (KVSCOPE_HAVE_FFMPEG undefined) open() fails with "built without
// FFmpeg".
#include <QImage>
#include <QString>

#include <memory>

namespace kvscope::studio {

class VideoEncoder {
  public:
    VideoEncoder();
    ~VideoEncoder();
    VideoEncoder(const VideoEncoder&) = delete;
    VideoEncoder& operator=(const VideoEncoder&) = delete;

    // True when this build can write videos at all.
    static bool available();
    // The container is chosen by the extension of `path` (.mp4 or .gif). With overwrite=false an
    // existing `path` is refused. False + error() on failure.
    bool open(const QString& path, int width, int height, int fps, bool overwrite);
    // Appends one frame; it is scaled to the video's size if it differs. False + error().
    bool add_frame(const QImage& frame);
    // Flushes the encoder, writes the trailer and moves the file into place. False + error().
    bool finish();

    // The encoder chosen by open(): "libx264", "mpeg4" or "gif".
    const QString& codec_name() const { return codec_; }
    int frames() const { return frames_; }
    const QString& error() const { return error_; }

  private:
    struct State;
    bool fail(const QString& problem);
    std::unique_ptr<State> s_;
    QString path_;
    QString codec_;
    QString error_;
    int frames_ = 0;
    bool overwrite_ = false;
};

}  // namespace kvscope::studio
