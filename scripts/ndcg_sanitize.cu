// A plain host program that launches the rank-prior kernel through its C launchers, for
// compute-sanitizer (memcheck, racecheck, synccheck, initcheck) without Python or torch in the
// process. Usage: ndcg_sanitize NS [C] [NQ] [N]. Runs FP32 then FP16 with integer-valued inputs
// (ties included), a k = 0 item and a k = all item, synchronises, and exits non-zero on any CUDA
// error or a prior outside [0, 1]. Built by scripts/gpu_check.sh:
//   nvcc -std=c++17 -O2 -lineinfo -I icpd/kernels/plugin scripts/ndcg_sanitize.cu icpd/kernels/ndcg_prior.cu
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "ndcg_prior.h"

#define CHECK(call)                                                                                      \
    do {                                                                                                 \
        cudaError_t err_ = (call);                                                                       \
        if (err_ != cudaSuccess) {                                                                       \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
            return 1;                                                                                    \
        }                                                                                                \
    } while (0)

template <typename T>
static int run(const char* name, int n, int nq, int ns, int c) {
    std::vector<T> q(static_cast<size_t>(n) * nq * c), s(static_cast<size_t>(n) * ns * c), rel(static_cast<size_t>(n) * ns);
    unsigned state = 12345u;
    auto next = [&state]() { state = state * 1664525u + 1013904223u; return static_cast<int>((state >> 16) % 7) - 3; };
    for (auto& v : q) v = static_cast<T>(static_cast<float>(next()));
    for (auto& v : s) v = static_cast<T>(static_cast<float>(next()));
    for (int i = 0; i < n; ++i) {
        for (int j = 0; j < ns; ++j) {
            // item 0: about 30% relevant; item 1: none (k = 0); item 2: all (k = all)
            float r = i == 1 ? 0.f : i == 2 ? 1.f : (next() > 0 ? 1.f : 0.f);
            rel[static_cast<size_t>(i) * ns + j] = static_cast<T>(r);
        }
    }
    T *dq, *ds, *dr;
    float* dout;
    CHECK(cudaMalloc(&dq, q.size() * sizeof(T)));
    CHECK(cudaMalloc(&ds, s.size() * sizeof(T)));
    CHECK(cudaMalloc(&dr, rel.size() * sizeof(T)));
    CHECK(cudaMalloc(&dout, static_cast<size_t>(n) * nq * sizeof(float)));
    CHECK(cudaMemcpy(dq, q.data(), q.size() * sizeof(T), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(ds, s.data(), s.size() * sizeof(T), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dr, rel.data(), rel.size() * sizeof(T), cudaMemcpyHostToDevice));
    int status;
    if constexpr (sizeof(T) == 4) {
        status = icpd_ndcg_prior_f32(dq, ds, dr, dout, n, nq, ns, c, nullptr);
    } else {
        status = icpd_ndcg_prior_f16(dq, ds, dr, dout, n, nq, ns, c, nullptr);
    }
    CHECK(static_cast<cudaError_t>(status));
    CHECK(cudaDeviceSynchronize());
    std::vector<float> out(static_cast<size_t>(n) * nq);
    CHECK(cudaMemcpy(out.data(), dout, out.size() * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < out.size(); ++i) {
        if (!(out[i] >= 0.f && out[i] <= 1.f + 1e-6f)) {
            std::fprintf(stderr, "%s: prior[%zu] = %g outside [0, 1]\n", name, i, out[i]);
            return 1;
        }
    }
    for (int j = 0; j < nq; ++j) {
        if (out[static_cast<size_t>(1) * nq + j] != 0.f || out[static_cast<size_t>(2) * nq + j] < 1.f - 1e-5f) {
            std::fprintf(stderr, "%s: k = 0 must give 0 and k = all 1, got %g and %g\n", name,
                out[static_cast<size_t>(1) * nq + j], out[static_cast<size_t>(2) * nq + j]);
            return 1;
        }
    }
    CHECK(cudaFree(dq));
    CHECK(cudaFree(ds));
    CHECK(cudaFree(dr));
    CHECK(cudaFree(dout));
    std::printf("%s n=%d nq=%d ns=%d c=%d: ok\n", name, n, nq, ns, c);
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s NS [C] [NQ] [N]\n", argv[0]);
        return 2;
    }
    int ns = std::atoi(argv[1]);
    int c = argc > 2 ? std::atoi(argv[2]) : 64;
    int nq = argc > 3 ? std::atoi(argv[3]) : 8;
    int n = argc > 4 ? std::atoi(argv[4]) : 3;
    if (n < 3) {
        std::fprintf(stderr, "N must be >= 3 (items: 30%% relevant, k = 0, k = all)\n");
        return 2;
    }
    return run<float>("f32", n, nq, ns, c) || run<__half>("f16", n, nq, ns, c);
}
