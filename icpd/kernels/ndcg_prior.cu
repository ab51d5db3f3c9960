// ICPD-Net rank prior (NDCG of the support pixels ranked by feature distance), CUDA C++.
//
// The rule, shapes and limits are in plugin/ndcg_prior.h, the C ABI this file implements.
//
// Design: one block of ICPD_NDCG_BLOCK_THREADS threads per (item, query pixel); block b handles
// row b = item * Nq + i, so the grid is 1-D with N * Nq blocks.
//   1. k = #{R > 0} for the item (block reduction; cheap next to the distances, so every block
//      recomputes it instead of needing a second kernel). k == 0 -> 0 and k == Ns -> 1 exit early.
//   2. Q[n, i] is staged in shared memory as FP32; each warp computes whole distances
//      d_j = ||S_j||^2 - 2 <Q_i, S_j> (lanes stride over C, FP32 FMAs, fixed shuffle tree, so a
//      given (i, j) always gets the same bits and duplicated support rows tie exactly).
//   3. Every d_j becomes one 64-bit key: order-preserving bits of d in the high word, j in the
//      low word. Keys are distinct, so ANY correct sort gives exactly the stable order
//      (ascending d, ties by lower j). Pad to a power of two P with ~0 (after every real key).
//   4. Bitonic sort of the P keys in shared memory.
//   5. DCG and IDCG over positions p < k with one two-value block reduction; both sums use the
//      same tree, so a perfect ranking gives exactly 1.
//
// Shared memory (dynamic, no opt-in attribute needed): 256 B scratch + 8 * P B keys + 4 * C B
// query row; Ns = 4096 and C = 2048 need 41216 B, under the 48 KiB default. The kernel checks
// %dynamic_smem_size and writes NaN rather than overrun when launched with too little.
//
// The __global__ entries have plain parameters in the order TensorRT AOT plugins require:
// inputs, int32 scalars, outputs.  Built without --use_fast_math: log2f/division stay accurate.
#include "plugin/ndcg_prior.h"

#include <climits>
#include <cstdint>

namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxWarps = ICPD_NDCG_BLOCK_THREADS / kWarpSize;
constexpr unsigned long long kPadKey = ~0ull;
constexpr unsigned int kFullMask = 0xffffffffu;

static_assert(ICPD_NDCG_BLOCK_THREADS % kWarpSize == 0, "block must be whole warps");
static_assert(3 * kMaxWarps * 4 + 4 <= ICPD_NDCG_SCRATCH_BYTES, "reduction scratch does not fit");
static_assert(ICPD_NDCG_SCRATCH_BYTES % 8 == 0, "keys after the scratch must be 8-byte aligned");

// Power of two >= ns (0 for ns = 0): the bitonic network's size.
__host__ __device__ inline int sort_size(int ns)
{
    int p = ns > 0 ? 1 : 0;
    while (p < ns)
    {
        p <<= 1;
    }
    return p;
}

// Dynamic shared memory of one block, or -1 outside the limits.
__host__ __device__ inline long long shared_bytes(int ns, int c)
{
    if (ns < 0 || ns > ICPD_NDCG_MAX_SUPPORT || c < 0)
    {
        return -1;
    }
    long long const bytes = ICPD_NDCG_SCRATCH_BYTES + 8LL * sort_size(ns) + 4LL * c;
    return bytes <= ICPD_NDCG_MAX_SHARED_BYTES ? bytes : -1;
}

__device__ __forceinline__ float to_float(float x)
{
    return x;
}

__device__ __forceinline__ float to_float(__half x)
{
    return __half2float(x);
}

// Order-preserving 64-bit key of (d, j). Works on the bits so no compiler flag can change it:
// -0 is folded into +0 (torch.sort compares them equal, so index order decides) and every NaN
// into the canonical +NaN, which sorts after +inf as in torch.sort.
__device__ __forceinline__ unsigned long long make_key(float d, int j)
{
    unsigned int u = __float_as_uint(d);
    if ((u & 0x7fffffffu) > 0x7f800000u)
    {
        u = 0x7fc00000u;
    }
    if ((u << 1) == 0u)
    {
        u = 0u;
    }
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (static_cast<unsigned long long>(u) << 32) | static_cast<unsigned int>(j);
}

// Butterfly sum: every lane ends with the same value (IEEE addition is commutative).
__device__ __forceinline__ float warp_sum(float v)
{
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1)
    {
        v += __shfl_xor_sync(kFullMask, v, offset);
    }
    return v;
}

__device__ __forceinline__ int warp_sum(int v)
{
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1)
    {
        v += __shfl_xor_sync(kFullMask, v, offset);
    }
    return v;
}

// Sum of v over the block, returned to every thread (uses red[0..kMaxWarps] as scratch).
__device__ __forceinline__ int block_sum_broadcast(int v, int* red)
{
    int const lane = threadIdx.x % kWarpSize;
    int const warp = threadIdx.x / kWarpSize;
    int const nwarps = blockDim.x / kWarpSize;
    v = warp_sum(v);
    if (lane == 0)
    {
        red[warp] = v;
    }
    __syncthreads();
    if (warp == 0)
    {
        v = lane < nwarps ? red[lane] : 0;
        v = warp_sum(v);
        if (lane == 0)
        {
            red[kMaxWarps] = v;
        }
    }
    __syncthreads();
    return red[kMaxWarps];
}

// Sums of a and b over the block with the same tree; valid in thread 0.
__device__ __forceinline__ void block_sum2(float& a, float& b, float* red_a, float* red_b)
{
    int const lane = threadIdx.x % kWarpSize;
    int const warp = threadIdx.x / kWarpSize;
    int const nwarps = blockDim.x / kWarpSize;
    a = warp_sum(a);
    b = warp_sum(b);
    if (lane == 0)
    {
        red_a[warp] = a;
        red_b[warp] = b;
    }
    __syncthreads();
    if (warp == 0)
    {
        a = lane < nwarps ? red_a[lane] : 0.0f;
        b = lane < nwarps ? red_b[lane] : 0.0f;
        a = warp_sum(a);
        b = warp_sum(b);
    }
}

template <typename T>
__device__ __forceinline__ void ndcg_prior_block(T const* __restrict__ q, T const* __restrict__ s,
    T const* __restrict__ rel, int n, int nq, int ns, int c, float* __restrict__ out)
{
    extern __shared__ __align__(16) unsigned char smem[];

    int const tid = threadIdx.x;
    int const nthreads = blockDim.x;
    long long const row = blockIdx.x; // item * nq + i
    if (n <= 0 || nq <= 0 || row >= static_cast<long long>(n) * nq)
    {
        return;
    }
    int const item = static_cast<int>(row / nq);

    unsigned int dyn_smem;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn_smem));
    long long const need = shared_bytes(ns, c);
    bool const bad_launch = need < 0 || static_cast<long long>(dyn_smem) < need || nthreads % kWarpSize != 0
        || nthreads > ICPD_NDCG_BLOCK_THREADS;
    if (bad_launch) // uniform over the block
    {
        if (tid == 0)
        {
            out[row] = __int_as_float(0x7fc00000);
        }
        return;
    }

    float* red_a = reinterpret_cast<float*>(smem);
    float* red_b = red_a + kMaxWarps;
    int* red_k = reinterpret_cast<int*>(red_b + kMaxWarps);
    int const padded = sort_size(ns);
    unsigned long long* keys = reinterpret_cast<unsigned long long*>(smem + ICPD_NDCG_SCRATCH_BYTES);
    float* qbuf = reinterpret_cast<float*>(keys + padded);

    // 1. k, the number of relevant support pixels of this item.
    T const* rel_row = rel + static_cast<long long>(item) * ns;
    int count = 0;
    for (int j = tid; j < ns; j += nthreads)
    {
        count += to_float(rel_row[j]) > 0.0f ? 1 : 0;
    }
    int const k = block_sum_broadcast(count, red_k);
    if (k == 0 || k == ns)
    {
        if (tid == 0)
        {
            out[row] = k == 0 ? 0.0f : 1.0f; // DCG == IDCG term by term when every pixel is relevant
        }
        return;
    }

    // 2. distances, 3. keys.
    T const* q_row = q + row * c;
    for (int t = tid; t < c; t += nthreads)
    {
        qbuf[t] = to_float(q_row[t]);
    }
    __syncthreads();

    T const* s_item = s + static_cast<long long>(item) * ns * c;
    int const lane = tid % kWarpSize;
    int const warp = tid / kWarpSize;
    int const nwarps = nthreads / kWarpSize;
    for (int j = warp; j < ns; j += nwarps)
    {
        T const* s_row = s_item + static_cast<long long>(j) * c;
        float dot = 0.0f;
        float sq = 0.0f;
        for (int t = lane; t < c; t += kWarpSize)
        {
            float const v = to_float(s_row[t]);
            dot = fmaf(qbuf[t], v, dot);
            sq = fmaf(v, v, sq);
        }
        dot = warp_sum(dot);
        sq = warp_sum(sq);
        if (lane == 0)
        {
            // _rn intrinsics: no contraction, the canonical ||S||^2 - 2<Q,S> in FP32.
            keys[j] = make_key(__fsub_rn(sq, __fmul_rn(2.0f, dot)), j);
        }
    }
    for (int j = ns + tid; j < padded; j += nthreads)
    {
        keys[j] = kPadKey;
    }
    __syncthreads();

    // 4. bitonic sort, ascending.
    for (int size = 2; size <= padded; size <<= 1)
    {
        for (int stride = size >> 1; stride > 0; stride >>= 1)
        {
            for (int t = tid; t < (padded >> 1); t += nthreads)
            {
                int const lo = 2 * t - (t & (stride - 1)); // (t / stride) * 2 * stride + t % stride
                int const hi = lo + stride;
                bool const ascending = (lo & size) == 0;
                unsigned long long const a = keys[lo];
                unsigned long long const b = keys[hi];
                if ((a > b) == ascending)
                {
                    keys[lo] = b;
                    keys[hi] = a;
                }
            }
            __syncthreads();
        }
    }

    // 5. DCG / IDCG over the first k positions.
    float dcg = 0.0f;
    float idcg = 0.0f;
    for (int p = tid; p < k; p += nthreads)
    {
        float const w = 1.0f / log2f(static_cast<float>(p + 2));
        int const j = static_cast<int>(keys[p] & 0xffffffffull);
        idcg += w;
        if (to_float(rel_row[j]) > 0.0f)
        {
            dcg += w;
        }
    }
    block_sum2(dcg, idcg, red_a, red_b);
    if (tid == 0)
    {
        out[row] = dcg / idcg;
    }
}

template <typename T>
int launch(void (*kernel)(T const*, T const*, T const*, int, int, int, int, float*), T const* q, T const* s,
    T const* rel, float* out, int n, int nq, int ns, int c, cudaStream_t stream)
{
    if (n < 0 || nq < 0 || ns < 0 || c < 0)
    {
        return static_cast<int>(cudaErrorInvalidValue);
    }
    long long const rows = static_cast<long long>(n) * nq;
    if (rows == 0)
    {
        return static_cast<int>(cudaSuccess);
    }
    long long const smem = shared_bytes(ns, c);
    if (rows > INT_MAX || smem < 0 || out == nullptr)
    {
        return static_cast<int>(cudaErrorInvalidValue);
    }
    kernel<<<static_cast<unsigned int>(rows), ICPD_NDCG_BLOCK_THREADS, static_cast<size_t>(smem), stream>>>(
        q, s, rel, n, nq, ns, c, out);
    return static_cast<int>(cudaGetLastError());
}

} // namespace

extern "C" __global__ void __launch_bounds__(ICPD_NDCG_BLOCK_THREADS) icpd_ndcg_prior_kernel_f32(
    float const* __restrict__ q, float const* __restrict__ s, float const* __restrict__ rel, int n, int nq, int ns,
    int c, float* __restrict__ out)
{
    ndcg_prior_block<float>(q, s, rel, n, nq, ns, c, out);
}

extern "C" __global__ void __launch_bounds__(ICPD_NDCG_BLOCK_THREADS) icpd_ndcg_prior_kernel_f16(
    __half const* __restrict__ q, __half const* __restrict__ s, __half const* __restrict__ rel, int n, int nq,
    int ns, int c, float* __restrict__ out)
{
    ndcg_prior_block<__half>(q, s, rel, n, nq, ns, c, out);
}

extern "C" int icpd_ndcg_prior_shared_bytes(int ns, int c)
{
    return static_cast<int>(shared_bytes(ns, c));
}

extern "C" int icpd_ndcg_prior_f32(float const* q, float const* s, float const* rel, float* out, int n, int nq,
    int ns, int c, cudaStream_t stream)
{
    return launch<float>(icpd_ndcg_prior_kernel_f32, q, s, rel, out, n, nq, ns, c, stream);
}

extern "C" int icpd_ndcg_prior_f16(__half const* q, __half const* s, __half const* rel, float* out, int n, int nq,
    int ns, int c, cudaStream_t stream)
{
    return launch<__half>(icpd_ndcg_prior_kernel_f16, q, s, rel, out, n, nq, ns, c, stream);
}
