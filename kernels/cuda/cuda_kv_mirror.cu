// Row moves for the device copies ("mirrors") of KV heads: appended and rewritten rows from the
// host staging area, survivors of an eviction gathered into place. cuda_backend.cpp plans the
// jobs from each head's edit journal (kernels/kv_journal.h). CPU twin: KVShadow::sync
// (kernels/kv_journal.cpp), which applies the same plan to a host copy.
//
// One warp per row (lanes over the d channels of K and V), rows grid-strided, one block row per
// job. Memory-bound: bytes 2 * (2d*4 + 8) per row moved (read + write), plus the map.
#include <algorithm>
#include <stdexcept>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxBlocksX = 1024;

__global__ void __launch_bounds__(kThreads) kv_rows_kernel(const KVRowJob* jobs, int64_t d) {
    grid_wait();  // launched as a dependent (cuda_device.cuh)
    grid_release();
    const KVRowJob jb = jobs[blockIdx.y];
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int64_t warp = static_cast<int64_t>(threadIdx.x) >> 5;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + warp; r < jb.n;
         r += static_cast<int64_t>(gridDim.x) * kWarps) {
        const int64_t m = jb.map ? jb.map[r] : r;
        const int64_t dst = jb.dst_index ? jb.dst_index[r] : r;
        const float* k;
        const float* v;
        int64_t p;
        if (m >= 0) {
            const int64_t ss = jb.s_stride > 0 ? jb.s_stride : d;
            k = jb.sk + m * ss;
            v = jb.sv + m * ss;
            p = jb.spos[m];
        } else {
            const int64_t s = -m - 1;
            k = jb.pk + s * d;
            v = jb.pv + s * d;
            p = jb.ppos[s];
        }
        float* dk = jb.dk + dst * d;
        float* dv = jb.dv + dst * d;
        for (int64_t c = lane; c < d; c += 32) {
            dk[c] = k[c];
            dv[c] = v[c];
        }
        if (lane == 0) jb.dpos[dst] = p;
    }
}

}  // namespace

void kv_rows(const KVRowJob* jobs, int64_t n_jobs, int64_t max_rows, int64_t d,
             cudaStream_t stream) {
    if (n_jobs <= 0 || max_rows <= 0) return;
    if (n_jobs > 65535) throw std::runtime_error("kv_rows: too many jobs for one launch");
    const int64_t bx = std::min<int64_t>((max_rows + kWarps - 1) / kWarps, kMaxBlocksX);
    launch_dependent(kv_rows_kernel,
                     dim3(static_cast<unsigned int>(bx), static_cast<unsigned int>(n_jobs)),
                     kThreads, 0, stream, jobs, d);
}

}  // namespace kvscope::cuda
