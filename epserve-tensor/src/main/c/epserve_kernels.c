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
    return 2;
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

/* ------------------------------------------------------------------------------------------ */
/* Int8 activations (QuantizedActivations.INT8): the activation rows quantized per block of 32  */
/* (Int8Activations.quantizeRow), then integer dot products with Q8_0 / Q4_0 / Q4_K weights as  */
/* ScalarKernels.dotInt8 defines them: per block, lane l of 8 holds the exact integer sum of the */
/* 4 products of elements 4l..4l+3, which is what vpmaddubsw + vpmaddwd leave in a register (as  */
/* llama.cpp's ggml_vec_dot_q8_0_q8_0 on AVX2); acc_l = fma(dw * dx, p_l, acc_l); hsum8 at the   */
/* end.                                                                                        */
/* ------------------------------------------------------------------------------------------ */

#define I8_BLOCK 32
#define I8_TINY 0x1p-100f

/* Blocks of 32 floats at x to 32 int8 at q, one scale at d and the sum of the 32 int8 at sum
   each (see Int8Activations). */
KERNEL void epserve_quantize_i8(const float *x, int32_t blocks, int8_t *q, float *d, int32_t *sum) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i max_finite = _mm256_set1_epi32(0x7f7fffff);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int32_t b = 0; b < blocks; b++) {
        const float *xb = x + (int64_t) I8_BLOCK * b;
        int8_t *qb = q + (int64_t) I8_BLOCK * b;
        __m256 v[4], a[4];
        __m256i bad = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(xb + 8 * j);
            a[j] = _mm256_and_ps(v[j], abs_mask);
            /* NaN and infinity: magnitude bits above the largest finite float */
            bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(_mm256_castps_si256(a[j]), max_finite));
        }
        if (!_mm256_testz_si256(bad, bad)) {
            uint32_t nan = 0x7fc00000u;
            memcpy(d + b, &nan, 4);
            memset(qb, 0, I8_BLOCK);
            sum[b] = 0;
            continue;
        }
        /* max is exact, so the order of this reduction does not matter (no NaN is left) */
        float m[8];
        _mm256_storeu_ps(m, _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
        float amax = m[0];
        for (int l = 1; l < 8; l++) {
            amax = m[l] > amax ? m[l] : amax;
        }
        if (amax < I8_TINY) {
            d[b] = 0.0f;
            memset(qb, 0, I8_BLOCK);
            sum[b] = 0;
            continue;
        }
        float id = 127.0f / amax;
        d[b] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256 idv = _mm256_set1_ps(id);
        __m256i i[4];
        for (int j = 0; j < 4; j++) {
            /* round half to even, as Math.rint; the product is below 127.5 in magnitude */
            i[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        /* narrow 4 x 8 int32 to 32 int8 (no saturation happens); packs interleave the 128-bit lanes, perm restores order */
        __m256i s01 = _mm256_packs_epi32(i[0], i[1]);
        __m256i s23 = _mm256_packs_epi32(i[2], i[3]);
        __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(s01, s23), perm);
        _mm256_storeu_si256((__m256i *) qb, b8);
        /* the block's sum: ones (unsigned) times the int8, pairs of pairs, then 8 lanes */
        __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), b8), _mm256_set1_epi16(1));
        int32_t l[8];
        _mm256_storeu_si256((__m256i *) l, s4);
        sum[b] = l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
    }
}

/* The f16 at p widened into all 8 lanes (vpbroadcastw + vcvtph2ps: cheaper than widening one
   value and broadcasting it; the same exact value). dw * dx is then one vector multiply, the
   same IEEE product as the scalar one of the definition. */
KERNEL static inline __m256 f16x8(const uint8_t *p) {
    int16_t h;
    memcpy(&h, p, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16(h));
}

/* The 8 lane sums of 4 consecutive products of 32 signed bytes w (any int8, -128 included) and x
   (within [-127, 127]), as floats: |w| unsigned times x with w's sign (pairs of products reach at
   most 2 * 128 * 127 = 32512, so vpmaddubsw does not saturate), pairs of pairs by vpmaddwd. */
KERNEL static inline __m256 i8_lanes(__m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

#define I8_Q8_0_ROWS 8

/* rows (<= I8_Q8_0_ROWS) consecutive Q8_0 rows against one quantized token. */
KERNEL static inline void i8_q8_0_rows(const int8_t *xq, const float *xd, const int32_t *xs, const uint8_t *w, int64_t rb,
                                      int32_t blocks, float *y, int rows) {
    (void) xs;
    __m256 acc[I8_Q8_0_ROWS];
    for (int i = 0; i < rows; i++) {
        acc[i] = _mm256_setzero_ps();
    }
    for (int32_t b = 0; b < blocks; b++) {
        int64_t o = (int64_t) b * 34;
        __m256i xv = _mm256_loadu_si256((const __m256i *) (xq + 32 * (int64_t) b));
        __m256 dx = _mm256_set1_ps(xd[b]);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            const uint8_t *blk = w + i * rb + o;
            __m256 s = _mm256_mul_ps(f16x8(blk), dx);
            acc[i] = _mm256_fmadd_ps(s, i8_lanes(_mm256_loadu_si256((const __m256i *) (blk + 2)), xv), acc[i]);
        }
    }
    for (int i = 0; i < rows; i++) {
        y[i] = hsum8(acc[i]);
    }
}

#define I8_Q4_0_ROWS 4

/* rows (<= I8_Q4_0_ROWS) consecutive Q4_0 rows against one quantized token: the 16 quant bytes
   give elements 0..15 (low nibbles) and 16..31 (high), minus 8, as 32 signed bytes in order. */
KERNEL static inline void i8_q4_0_rows(const int8_t *xq, const float *xd, const int32_t *xs, const uint8_t *w, int64_t rb,
                                      int32_t blocks, float *y, int rows) {
    (void) xs;
    const __m256i m15 = _mm256_set1_epi8(15), e8 = _mm256_set1_epi8(8);
    __m256 acc[I8_Q4_0_ROWS];
    for (int i = 0; i < rows; i++) {
        acc[i] = _mm256_setzero_ps();
    }
    for (int32_t b = 0; b < blocks; b++) {
        int64_t o = (int64_t) b * 18;
        __m256i xv = _mm256_loadu_si256((const __m256i *) (xq + 32 * (int64_t) b));
        __m256 dx = _mm256_set1_ps(xd[b]);
#pragma GCC unroll 4
        for (int i = 0; i < rows; i++) {
            const uint8_t *blk = w + i * rb + o;
            __m256 s = _mm256_mul_ps(f16x8(blk), dx);
            __m128i v = _mm_loadu_si128((const __m128i *) (blk + 2));
            __m256i qv = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), m15), e8);
            acc[i] = _mm256_fmadd_ps(s, i8_lanes(qv, xv), acc[i]);
        }
    }
    for (int i = 0; i < rows; i++) {
        y[i] = hsum8(acc[i]);
    }
}

#define I8_Q4_K_ROWS 2

/* rows (<= I8_Q4_K_ROWS) consecutive Q4_K rows against one quantized token: per super-block the
   rows' factors (q4_k_factors: f[s] = d * sc[s], f[8 + s] = -(dmin * m[s])), then per 32-byte
   chunk c sub-block 2c (low nibbles, activation block 8 * sb + 2c) and 2c + 1 (high nibbles).
   Nibbles are unsigned, so they go straight into vpmaddubsw's unsigned operand. The offsets'
   share is a scalar fma chain per row, in sub-block order, added after the lane sum. */
KERNEL static inline void i8_q4_k_rows(const int8_t *xq, const float *xd, const int32_t *xs, const uint8_t *w, int64_t rb,
                                      int32_t blocks, float *y, int rows) {
    const __m256i m15 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256 acc[I8_Q4_K_ROWS];
    __m128 macc[I8_Q4_K_ROWS];
    float f[I8_Q4_K_ROWS][16];
    for (int i = 0; i < rows; i++) {
        acc[i] = _mm256_setzero_ps();
        macc[i] = _mm_setzero_ps();
    }
    for (int32_t sb = 0; sb < blocks; sb++) {
        int64_t o = (int64_t) sb * 144;
        for (int i = 0; i < rows; i++) {
            q4_k_factors(w + i * rb + o, f[i]);
        }
        for (int c = 0; c < 4; c++) {
            int64_t bl = 8 * (int64_t) sb + 2 * c;
            __m256i xl = _mm256_loadu_si256((const __m256i *) (xq + 32 * bl));
            __m256i xh = _mm256_loadu_si256((const __m256i *) (xq + 32 * bl + 32));
            float dl = xd[bl], dh = xd[bl + 1];
            __m128 sl = _mm_set_ss((float) xs[bl]), sh = _mm_set_ss((float) xs[bl + 1]);
#pragma GCC unroll 2
            for (int i = 0; i < rows; i++) {
                __m256i v = _mm256_loadu_si256((const __m256i *) (w + i * rb + o + 16 + 32 * c));
                __m256i lo = _mm256_and_si256(v, m15), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
                __m256 pl = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), ones));
                __m256 ph = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), ones));
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(f[i][2 * c] * dl), pl, acc[i]);
                macc[i] = _mm_fmadd_ss(_mm_set_ss(f[i][8 + 2 * c] * dl), sl, macc[i]);
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(f[i][2 * c + 1] * dh), ph, acc[i]);
                macc[i] = _mm_fmadd_ss(_mm_set_ss(f[i][9 + 2 * c] * dh), sh, macc[i]);
            }
        }
    }
    for (int i = 0; i < rows; i++) {
        y[i] = hsum8(acc[i]) + _mm_cvtss_f32(macc[i]);
    }
}

/* Rows [r0, r1) of y[t * n + r] for the m tokens at xq (token t's k values at t * k), xd and xs
   (its k / 32 scales and block sums at t * k / 32): groups of ROWS rows, every token over a
   group while its weights are in L1, then the remaining rows one at a time. */
#define I8_LOOP(kernel, ROWS)                                                                    \
    int64_t xb = k / I8_BLOCK;                                                                  \
    int32_t r = r0;                                                                             \
    for (; r + (ROWS) <= r1; r += (ROWS)) {                                                     \
        for (int32_t t = 0; t < m; t++) {                                                       \
            kernel(xq + t * (int64_t) k, xd + t * xb, xs + t * xb, w + r * rb, rb, blocks, y + t * (int64_t) n + r, (ROWS)); \
        }                                                                                       \
    }                                                                                           \
    for (; r < r1; r++) {                                                                       \
        for (int32_t t = 0; t < m; t++) {                                                       \
            kernel(xq + t * (int64_t) k, xd + t * xb, xs + t * xb, w + r * rb, rb, blocks, y + t * (int64_t) n + r, 1); \
        }                                                                                       \
    }

KERNEL void epserve_matmul_i8_q8_0(const int8_t *xq, const float *xd, const int32_t *xs, int32_t m, int32_t k, const uint8_t *w, int64_t rb,
                                   int32_t blocks, float *y, int32_t n, int32_t r0, int32_t r1) {
    I8_LOOP(i8_q8_0_rows, I8_Q8_0_ROWS)
}

KERNEL void epserve_matmul_i8_q4_0(const int8_t *xq, const float *xd, const int32_t *xs, int32_t m, int32_t k, const uint8_t *w, int64_t rb,
                                   int32_t blocks, float *y, int32_t n, int32_t r0, int32_t r1) {
    I8_LOOP(i8_q4_0_rows, I8_Q4_0_ROWS)
}

KERNEL void epserve_matmul_i8_q4_k(const int8_t *xq, const float *xd, const int32_t *xs, int32_t m, int32_t k, const uint8_t *w,
                                   int64_t rb, int32_t blocks, float *y, int32_t n, int32_t r0, int32_t r1) {
    I8_LOOP(i8_q4_k_rows, I8_Q4_K_ROWS)
}
