/*
 * C ABI of the ICPD-Net rank-prior (NDCG) CUDA kernel, implemented in ../ndcg_prior.cu.
 *
 * For item n and query pixel i (all tensors contiguous, row-major):
 *   d_j   = ||S[n, j]||^2 - 2 <Q[n, i], S[n, j]>        (FP32 accumulation, also for FP16 inputs)
 *   order = support pixels by ascending d, ties by lower index j first (stable)
 *   k     = #{ j : R[n, j] > 0 }
 *   out[n, i] = sum_{p<k} [R[n, order[p]] > 0] / log2(p + 2)  /  sum_{p<k} 1 / log2(p + 2),  0 when k = 0
 *
 * Shapes: q (N, Nq, C), s (N, Ns, C), rel (N, Ns) in the input dtype, out (N, Nq) float32.
 * Limits: Ns <= ICPD_NDCG_MAX_SUPPORT (4096), and the dynamic shared memory of one block,
 * icpd_ndcg_prior_shared_bytes(Ns, C), must fit ICPD_NDCG_MAX_SHARED_BYTES (48 KiB, the limit
 * without the opt-in attribute), i.e. C <= 4032 at Ns = 4096 (any C the paper uses fits).  Calls outside the limits return
 * cudaErrorInvalidValue before touching the device.
 *
 * The launchers return a cudaError_t value as int (0 = cudaSuccess). They are asynchronous on
 * `stream`; an error inside the kernel surfaces at the next synchronisation.
 */
#ifndef ICPD_NDCG_PRIOR_H
#define ICPD_NDCG_PRIOR_H

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

/* Keep these in sync with icpd/kernels/launch.py (a unit test compares them). */
#define ICPD_NDCG_MAX_SUPPORT 4096
#define ICPD_NDCG_BLOCK_THREADS 256
#define ICPD_NDCG_SCRATCH_BYTES 256
#define ICPD_NDCG_MAX_SHARED_BYTES 49152

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of dynamic shared memory one block needs, or -1 when (ns, c) is outside the limits. */
int icpd_ndcg_prior_shared_bytes(int ns, int c);

int icpd_ndcg_prior_f32(const float* q, const float* s, const float* rel, float* out, int n, int nq, int ns,
    int c, cudaStream_t stream);

int icpd_ndcg_prior_f16(const __half* q, const __half* s, const __half* rel, float* out, int n, int nq, int ns,
    int c, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* ICPD_NDCG_PRIOR_H */
