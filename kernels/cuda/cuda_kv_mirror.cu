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

// Rows of job jb this block takes; spos(m): the position of source row m (wherever it is).
template <class SourcePos>
__device__ __forceinline__ void move_rows(const KVRowJob& jb, SourcePos spos, int64_t d) {
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
            p = spos(m);
        } else {
            const int64_t s = -m - 1;
            k = jb.pk + s * d;
            v = jb.pv + s * d;
            p = jb.ppos[s];
        }
        float* dk = jb.dk + dst * d;
        float* dv = jb.dv + dst * d;
        if (d % 4 == 0) {  // rows of 16-byte pieces (every row start is 16-byte aligned then)
            for (int64_t c = lane; c < d / 4; c += 32) {
                const float4 kk = reinterpret_cast<const float4*>(k)[c];  // both loads first
                const float4 vv = reinterpret_cast<const float4*>(v)[c];
                reinterpret_cast<float4*>(dk)[c] = kk;
                reinterpret_cast<float4*>(dv)[c] = vv;
            }
        } else {
            for (int64_t c = lane; c < d; c += 32) {
                dk[c] = k[c];
                dv[c] = v[c];
            }
        }
        if (lane == 0) jb.dpos[dst] = p;
    }
}

__global__ void __launch_bounds__(kThreads) kv_rows_kernel(const KVRowJob* jobs, int64_t d) {
    grid_wait();  // launched as a dependent (cuda_device.cuh)
    grid_release();
    const KVRowJob jb = jobs[blockIdx.y];
    move_rows(
        jb, [&](int64_t m) { return jb.spos[m]; }, d);
}

// The jobs in the kernel's parameters (__grid_constant__: read in place, never copied). The
// launch bound's "1 block per SM" lets ptxas use the registers it needs: without it, it held this
// kernel to 40 and spilled.
__global__ void __launch_bounds__(kThreads, 1)
    kv_rows_inline_kernel(const __grid_constant__ KVRowJobsInline p, int64_t d) {
    grid_wait();
    grid_release();
    const int64_t i = blockIdx.y;
    const KVRowJob jb = p.jobs[i];
    const int64_t* spos = p.spos_at[i] >= 0 ? p.pos + p.spos_at[i] : jb.spos;
    move_rows(
        jb, [spos](int64_t m) { return spos[m]; }, d);
}

dim3 kv_rows_grid(int64_t n_jobs, int64_t max_rows) {
    const int64_t bx = std::min<int64_t>((max_rows + kWarps - 1) / kWarps, kMaxBlocksX);
    return dim3(static_cast<unsigned int>(bx), static_cast<unsigned int>(n_jobs));
}

}  // namespace

void kv_rows(const KVRowJob* jobs, int64_t n_jobs, int64_t max_rows, int64_t d,
             cudaStream_t stream) {
    if (n_jobs <= 0 || max_rows <= 0) return;
    if (n_jobs > 65535) throw std::runtime_error("kv_rows: too many jobs for one launch");
    launch_dependent(kv_rows_kernel, kv_rows_grid(n_jobs, max_rows), kThreads, 0, stream, jobs, d);
}

void kv_rows_inline(const KVRowJobsInline& jobs, int64_t max_rows, int64_t d, cudaStream_t stream) {
    if (jobs.n_jobs <= 0 || max_rows <= 0) return;
    if (jobs.n_jobs > kInlineJobs) throw std::runtime_error("kv_rows_inline: too many jobs");
    launch_dependent(kv_rows_inline_kernel, kv_rows_grid(jobs.n_jobs, max_rows), kThreads, 0,
                     stream, jobs, d);
}

}  // namespace kvscope::cuda
