/*
 * epserve's native matvec kernels for x86-64 with AVX2, FMA and F16C, called through the JDK's
 * foreign function interface by io.epserve.tensor.NativeKernels.
 *
 * They compute exactly what the Vector API kernels compute on an 8-lane (AVX2) JVM, bit for bit:
 * each weight is decoded exactly to float, lane l of a row's 8-lane accumulator sees
 * fma(w[c + l], x[c + l], acc) for c = 0, 8, 16, ... in order, and the row's result is the fixed
 * pairwise lane sum ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). Which rows are computed together does
 * not change any row's result, so the grouping here is free to differ from the Java code's.
 *
 * Why native at all: the JIT's code for these loops (byte load, sign extension, int-to-float
 * conversion, scale, fma) reaches about a quarter of what the same instructions do when
 * scheduled by a C compiler, so quantized decode was compute-bound below the memory bandwidth
 * it should be limited by (numbers in BENCHMARKS.md, "Quantized experts").
 *
 * Built by the epserve-tensor module's build (build.sh) with the system C compiler; the library
 * may be absent, and the functions are only called after epserve_native_cpu_ok() said yes.
 * Compiled without fast-math and without fp contraction: every rounding here is one the Java
 * kernels also make.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define KERNEL __attribute__((target("avx2,fma,f16c")))

/** Version of the calling convention below; NativeKernels refuses a library of another version. */
int32_t epserve_native_abi(void) {
    return 1;
}

/** 1 when this CPU runs the kernels (AVX2, FMA, F16C), 0 otherwise. */
int32_t epserve_native_cpu_ok(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/* The fixed pairwise lane sum of the Java kernels (VectorKernels.hsum). */
KERNEL static inline float hsum8(__m256 v) {
    float a[8];
    _mm256_storeu_ps(a, v);
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

KERNEL static inline float f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 8 signed bytes at p as floats (exact). */
KERNEL static inline __m256 i8x8(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) p)));
}

/* 8 unsigned bytes (the low 8 of v) as floats (exact). */
KERNEL static inline __m256 u8x8(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}

/*
 * Each kernel computes several consecutive rows at once, one accumulator per row, so that that
 * many independent fma chains and streams of weights are in flight. Measured from DRAM on the
 * 2-vCPU Zen 3 (single thread, CPU time): Q8_0 ran about 20% faster with 8 rows than with 4
 * (10 spill and were slower); Q4_0 was best at 4 and Q4_K at 2 (written out below), where each
 * row's decoding needs more registers. Nothing here changes a row's arithmetic.
 */

/* ------------------------------------------------------------------------------------------ */
/* Q8_0: blocks of 34 bytes, f16 scale d then 32 int8; w = q * d (exact).                       */
/* ------------------------------------------------------------------------------------------ */

#define Q8_ROWS 8

KERNEL static inline void q8_0_rows(const float *x, const uint8_t *w, int64_t rb, int32_t blocks, float *y, int rows) {
    __m256 acc[Q8_ROWS];
    for (int i = 0; i < rows; i++) {
        acc[i] = _mm256_setzero_ps();
    }
    for (int32_t b = 0; b < blocks; b++) {
        int64_t o = (int64_t) b * 34;
        __m256 d[Q8_ROWS];
        for (int i = 0; i < rows; i++) {
            d[i] = _mm256_set1_ps(f16(w + i * rb + o));
        }
        const float *xb = x + 32 * b;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256 xv = _mm256_loadu_ps(xb + 8 * j);
#pragma GCC unroll 8
            for (int i = 0; i < rows; i++) {
                acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(i8x8(w + i * rb + o + 2 + 8 * j), d[i]), xv, acc[i]);
            }
        }
    }
    for (int i = 0; i < rows; i++) {
        y[i] = hsum8(acc[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Q4_0: blocks of 18 bytes, f16 scale d then 16 bytes; byte j holds element j (low nibble) and  */
/* j + 16 (high); w = fma(q, d, -8d) = (q - 8) d (exact).                                        */
/* ------------------------------------------------------------------------------------------ */

#define Q4_0_ROWS 4

KERNEL static inline void q4_0_rows(const float *x, const uint8_t *w, int64_t rb, int32_t blocks, float *y, int rows) {
    const __m128i mask = _mm_set1_epi8(15);
    __m256 acc[Q4_0_ROWS];
    for (int i = 0; i < rows; i++) {
        acc[i] = _mm256_setzero_ps();
    }
    for (int32_t b = 0; b < blocks; b++) {
        int64_t o = (int64_t) b * 18;
        const float *xb = x + 32 * b;
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            const uint8_t *blk = w + i * rb + o;
            float s = f16(blk);
            __m256 d = _mm256_set1_ps(s), m = _mm256_set1_ps(-8.0f * s);
            __m128i v = _mm_loadu_si128((const __m128i *) (blk + 2));
            __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
            acc[i] = _mm256_fmadd_ps(_mm256_fmadd_ps(u8x8(lo), d, m), _mm256_loadu_ps(xb), acc[i]);
            acc[i] = _mm256_fmadd_ps(_mm256_fmadd_ps(u8x8(_mm_srli_si128(lo, 8)), d, m), _mm256_loadu_ps(xb + 8), acc[i]);
            acc[i] = _mm256_fmadd_ps(_mm256_fmadd_ps(u8x8(hi), d, m), _mm256_loadu_ps(xb + 16), acc[i]);
            acc[i] = _mm256_fmadd_ps(_mm256_fmadd_ps(u8x8(_mm_srli_si128(hi, 8)), d, m), _mm256_loadu_ps(xb + 24), acc[i]);
        }
    }
    for (int i = 0; i < rows; i++) {
        y[i] = hsum8(acc[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Q4_K: super-blocks of 144 bytes: f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins,   */
/* 128 bytes of quants. Chunk c (32 bytes) holds sub-block 2c in its low nibbles and 2c + 1 in   */
/* its high ones. Sub-block s: f = d * sc[s], g = -(dmin * m[s]) (exact products), and           */
/* w = fma(q, f, g) (one rounding), as QuantizedKernels.factorsQ4_K and its users do.            */
/* ------------------------------------------------------------------------------------------ */

KERNEL static inline void q4_k_factors(const uint8_t *b, float *f) {
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *S = b + 4;
    for (int s = 0; s < 4; s++) {
        f[s] = d * (float) (S[s] & 63);
        f[8 + s] = -(dmin * (float) (S[s + 4] & 63));
        f[4 + s] = d * (float) ((S[s + 8] & 15) | (S[s] >> 6) << 4);
        f[12 + s] = -(dmin * (float) ((S[s + 8] >> 4) | (S[s + 4] >> 6) << 4));
    }
}

#define Q4K_STEP(i, v, dv, mv, xv) acc##i = _mm256_fmadd_ps(_mm256_fmadd_ps(u8x8(v), dv, mv), xv, acc##i)

/* Sub-blocks 2c and 2c + 1 of row i: 64 weights from the 32 bytes at q. */
#define Q4K_CHUNK(i)                                                                         \
    {                                                                                        \
        const uint8_t *q = w##i + o + 16 + 32 * c;                                          \
        __m256 dl = _mm256_set1_ps(f##i[2 * c]), ml = _mm256_set1_ps(f##i[8 + 2 * c]);       \
        __m256 dh = _mm256_set1_ps(f##i[2 * c + 1]), mh = _mm256_set1_ps(f##i[9 + 2 * c]);   \
        __m128i v0 = _mm_loadu_si128((const __m128i *) q);                                  \
        __m128i v1 = _mm_loadu_si128((const __m128i *) (q + 16));                           \
        __m128i l0 = _mm_and_si128(v0, mask), l1 = _mm_and_si128(v1, mask);                  \
        __m128i h0 = _mm_and_si128(_mm_srli_epi16(v0, 4), mask);                             \
        __m128i h1 = _mm_and_si128(_mm_srli_epi16(v1, 4), mask);                             \
        Q4K_STEP(i, l0, dl, ml, _mm256_loadu_ps(xb));                                        \
        Q4K_STEP(i, _mm_srli_si128(l0, 8), dl, ml, _mm256_loadu_ps(xb + 8));                 \
        Q4K_STEP(i, l1, dl, ml, _mm256_loadu_ps(xb + 16));                                   \
        Q4K_STEP(i, _mm_srli_si128(l1, 8), dl, ml, _mm256_loadu_ps(xb + 24));                \
        Q4K_STEP(i, h0, dh, mh, _mm256_loadu_ps(xb + 32));                                   \
        Q4K_STEP(i, _mm_srli_si128(h0, 8), dh, mh, _mm256_loadu_ps(xb + 40));                \
        Q4K_STEP(i, h1, dh, mh, _mm256_loadu_ps(xb + 48));                                   \
        Q4K_STEP(i, _mm_srli_si128(h1, 8), dh, mh, _mm256_loadu_ps(xb + 56));                \
    }

KERNEL static void q4_k_rows2(const float *x, const uint8_t *w, int64_t rb, int32_t blocks, float *y) {
    const uint8_t *w0 = w, *w1 = w + rb;
    const __m128i mask = _mm_set1_epi8(15);
    float f0[16], f1[16];
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int32_t b = 0; b < blocks; b++) {
        int64_t o = (int64_t) b * 144;
        q4_k_factors(w0 + o, f0);
        q4_k_factors(w1 + o, f1);
        for (int c = 0; c < 4; c++) {
            const float *xb = x + 256 * b + 64 * c;
            Q4K_CHUNK(0) Q4K_CHUNK(1)
        }
    }
    y[0] = hsum8(acc0); y[1] = hsum8(acc1);
}

KERNEL static void q4_k_rows1(const float *x, const uint8_t *w0, int32_t blocks, float *y) {
    const __m128i mask = _mm_set1_epi8(15);
    float f0[16];
    __m256 acc0 = _mm256_setzero_ps();
    for (int32_t b = 0; b < blocks; b++) {
        int64_t o = (int64_t) b * 144;
        q4_k_factors(w0 + o, f0);
        for (int c = 0; c < 4; c++) {
            const float *xb = x + 256 * b + 64 * c;
            Q4K_CHUNK(0)
        }
    }
    y[0] = hsum8(acc0);
}

/* Full groups of ROWS rows with the row count a constant (so loops unroll and accumulators stay
   in registers), then the rest one row at a time. */
#define ROW_LOOP(kernel, ROWS)                                        \
    int32_t r = r0;                                                   \
    for (; r + (ROWS) <= r1; r += (ROWS)) {                           \
        kernel(x, w + r * rb, rb, blocks, y + r, (ROWS));             \
    }                                                                 \
    for (; r < r1; r++) {                                             \
        kernel(x, w + r * rb, rb, blocks, y + r, 1);                  \
    }

/* ------------------------------------------------------------------------------------------ */
/* Entry points: rows [r0, r1) of y = w x for one token. x: the token's k floats; w: the first   */
/* byte of row 0; rb: bytes per row; blocks: blocks per row; y: the output of row 0 (y[r] is     */
/* written for each r in [r0, r1)).                                                              */
/* ------------------------------------------------------------------------------------------ */

KERNEL void epserve_matvec_q8_0(const float *x, const uint8_t *w, int64_t rb, int32_t blocks, float *y, int32_t r0, int32_t r1) {
    ROW_LOOP(q8_0_rows, Q8_ROWS)
}

KERNEL void epserve_matvec_q4_0(const float *x, const uint8_t *w, int64_t rb, int32_t blocks, float *y, int32_t r0, int32_t r1) {
    ROW_LOOP(q4_0_rows, Q4_0_ROWS)
}

KERNEL void epserve_matvec_q4_k(const float *x, const uint8_t *w, int64_t rb, int32_t blocks, float *y, int32_t r0, int32_t r1) {
    int32_t r = r0;
    for (; r + 2 <= r1; r += 2) {
        q4_k_rows2(x, w + r * rb, rb, blocks, y + r);
    }
    for (; r < r1; r++) {
        q4_k_rows1(x, w + r * rb, blocks, y + r);
    }
}
