/*
 * epserve's native BF16 matmul kernels for x86-64 with AVX2 and FMA, called through the JDK's
 * foreign function interface by io.epserve.tensor.NativeBf16Kernels.
 *
 * Why: the Vector API kernels are fast only once C2 has compiled them. Before that (the first
 * seconds of every JVM: a cold `generate`, the first requests of `serve`) they run in the
 * interpreter and C1, where every vector is an object: a cold prefill ran at a sixth of the warm
 * rate, a third of its CPU time spent zeroing the fresh heap pages those objects land on. Code
 * compiled ahead of time runs at full speed from the first call.
 *
 * Bitwise contract (VectorKernels, "One accumulation scheme"): for every output y[i, n], lane l
 * of an 8-lane accumulator sees fma(w[n, c + l], x[i, c + l], acc) for c = 0, 8, 16, ... while
 * c + 8 <= K, in order; then the fixed pairwise lane sum ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7));
 * then s = fma(w[n, c], x[i, c], s) for the K % 8 last columns. BF16 widens exactly (the top half
 * of a float). Which rows and tokens are computed together changes no output, so the tiles here
 * are free to differ from the Java ones, and a token's result is the same whatever m is.
 *
 * Built by the epserve-tensor module's build (build.sh) with the system C compiler, without
 * fast-math and without fp contraction; the functions are called only after
 * epserve_bf16_cpu_ok() said yes.
 */
#include <immintrin.h>
#include <stdint.h>

#define KERNEL __attribute__((target("avx2,fma")))

/** Version of the calling convention below; NativeBf16Kernels refuses a library of another version. */
int32_t epserve_bf16_abi(void) {
    return 2;
}

/** 1 when this CPU runs the kernels (AVX2, FMA), 0 otherwise. */
int32_t epserve_bf16_cpu_ok(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* 8 BF16 weights at p widened to float (exact: zero-extend, shift into the top half). */
KERNEL static inline __m256 bf16x8(const uint16_t *p) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

KERNEL static inline float bf16(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v = {.u = (uint32_t) h << 16};
    return v.f;
}

/* The fixed pairwise lane sum (VectorKernels.hsum), then the scalar tail of one dot product. */
KERNEL static inline float finish(__m256 acc, const uint16_t *w, const float *x, int32_t kv, int32_t k) {
    float a[8];
    _mm256_storeu_ps(a, acc);
    float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (int32_t c = kv; c < k; c++) {
        s = __builtin_fmaf(bf16(w[c]), x[c], s);
    }
    return s;
}

/*
 * R rows × T tokens over the whole row: R·T accumulators in registers, each weight vector widened
 * once and used at once for the T tokens, each x vector used for the R rows. R and T are
 * constants at every call site, so the loops unroll into straight register code.
 * Tiles: 8 × 1 for one token (8 independent DRAM streams, as the Java matvec), 4 × 3 for more
 * (12 accumulators + 3 x + 1 weight = the 16 ymm registers).
 */
KERNEL static inline void tile(const float *x, int64_t xs, const uint16_t *w, int64_t k64, int32_t kv, int32_t k,
                               float *y, int64_t ys, const int R, const int T) {
    __m256 acc[8][3];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            acc[r][t] = _mm256_setzero_ps();
        }
    }
    for (int32_t c = 0; c < kv; c += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            xv[t] = _mm256_loadu_ps(x + t * xs + c);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 wv = bf16x8(w + r * k64 + c);
#pragma GCC unroll 3
            for (int t = 0; t < T; t++) {
                acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            y[t * ys + r] = finish(acc[r][t], w + r * k64, x + t * xs, kv, k);
        }
    }
}

/*
 * Rows [r0, r1) of y[i, r] = w[r, :] · x[i, :] for m tokens: x is m rows of k floats from x[xoff], w is n rows
 * of k BF16 weights (little-endian, any alignment of 2), y is m rows of n floats from y[yoff]. For several
 * tokens, blocks of 4 rows (their 8 KiB-per-1024-columns of weights stay in L1 while every token
 * passes) times groups of 3 tokens.
 */
KERNEL void epserve_bf16_matmul(const float *x, int32_t xoff, int32_t m, const uint16_t *w, int32_t n, int32_t k,
                                float *y, int32_t yoff, int32_t r0, int32_t r1) {
    /* the offsets come apart from the arrays so the caller passes whole arrays, whose segments it
       makes once, instead of a fresh slice per call */
    x += xoff;
    y += yoff;
    int32_t kv = k - k % 8;
    int64_t k64 = k;
    if (m == 1) {
        int32_t r = r0;
        for (; r + 8 <= r1; r += 8) {
            tile(x, k, w + r * k64, k64, kv, k, y + r, n, 8, 1);
        }
        for (; r < r1; r++) {
            tile(x, k, w + r * k64, k64, kv, k, y + r, n, 1, 1);
        }
        return;
    }
    int32_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint16_t *wr = w + r * k64;
        int32_t i = 0;
        for (; i + 3 <= m; i += 3) {
            tile(x + i * k64, k, wr, k64, kv, k, y + i * (int64_t) n + r, n, 4, 3);
        }
        if (m - i == 2) {
            tile(x + i * k64, k, wr, k64, kv, k, y + i * (int64_t) n + r, n, 4, 2);
        } else if (m - i == 1) {
            tile(x + i * k64, k, wr, k64, kv, k, y + i * (int64_t) n + r, n, 4, 1);
        }
    }
    for (; r < r1; r++) {
        const uint16_t *wr = w + r * k64;
        int32_t i = 0;
        for (; i + 3 <= m; i += 3) {
            tile(x + i * k64, k, wr, k64, kv, k, y + i * (int64_t) n + r, n, 1, 3);
        }
        for (; i < m; i++) {
            tile(x + i * k64, k, wr, k64, kv, k, y + i * (int64_t) n + r, n, 1, 1);
        }
    }
}
