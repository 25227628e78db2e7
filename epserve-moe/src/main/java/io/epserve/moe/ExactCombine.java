package io.epserve.moe;

/**
 * The combine that does not depend on how a token's experts are grouped on workers: every
 * weighted expert output {@code w·y} of a token is rounded <em>once, on its own</em>, to a
 * fixed-point grid, and the grid values are added as integers, which is exact, associative and
 * commutative. A worker's partial sum is then an exact integer; the frontend adds the workers'
 * integers and converts once to float. Whatever the placement, the worker count, the replica a
 * step chose or the arrival order, each token's output has the same bits.
 *
 * <p><b>The grid.</b> For token t it is {@code 2^(e_t - FRACTION_BITS)}, e_t the binary exponent
 * of the largest |x_t| of the token's hidden state (the expert input, known bit for bit to the
 * frontend and every worker), so the grid is a pure function of the token. Each term is rounded
 * to nearest on it (from the exact double product {@code w·y}): absolute error at most
 * {@code 2^(e_t - 29)} per term, i.e. about 2e-9 of the input's largest value, below half an ulp
 * of a residual stream value of the input's magnitude.
 *
 * <p><b>Range and the wire.</b> Sums are kept in 64 bits. One term may be up to 2^47 grid units,
 * {@code 2^(e_t + 19)} (half a million times the input's largest value), so up to 2^16 terms can
 * never overflow; a larger or non-finite term makes {@link #toGrid} throw (a loud failure, never a
 * silently different number). On the wire (F32 hidden states) a worker sends its integers as 32
 * bits when every value of the answer fits, i.e. {@code |partial| < 2^(e_t + 3)} (eight times the
 * input's largest value: the usual case), and as 64 bits otherwise; the byte count says which. So
 * an answer is never larger than the previous F32 one unless an expert output exceeds eight times
 * the largest value of its input; then that answer doubles. Four bytes cannot hold every exact
 * partial sum in general (two floats' exact sum can need 48+ significant bits), hence this
 * variable width rather than a fixed 4-byte format.
 *
 * <p>The trade-off against the previous float combine: a term's relative precision is now tied
 * to its input's scale (an output many orders of magnitude below its input keeps fewer
 * significant bits than float would), in exchange for exact, order-free sums.
 */
public final class ExactCombine {
    private ExactCombine() {}

    /** Binary digits of the grid below the input's largest power of two. */
    public static final int FRACTION_BITS = 28;
    /** Largest |grid value| one term may have, so that even 2^16 terms cannot overflow a long. */
    private static final double TERM_LIMIT = 0x1p47;

    /** e_t - FRACTION_BITS for the row {@code x[off, off + n)}; all-zero rows get the finest grid. */
    public static int gridExponent(float[] x, int off, int n) {
        float max = 0;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, Math.abs(x[off + i]));
        }
        if (!(max < Float.POSITIVE_INFINITY)) {
            throw new IllegalArgumentException("hidden state is not finite (" + max + ")");
        }
        return Math.getExponent(max == 0 ? Float.MIN_NORMAL : max) - FRACTION_BITS;
    }

    /** {@code acc[accOff + i] += round(w · y[yOff + i] / 2^grid)} for i in [0, n). */
    public static void accumulate(float w, float[] y, int yOff, long[] acc, int accOff, int n, int grid) {
        double scale = Math.scalb((double) w, -grid);
        for (int i = 0; i < n; i++) {
            acc[accOff + i] += toGrid(y[yOff + i] * scale);
        }
    }

    /** One term on the grid; throws when it is outside the exact range (or not finite). */
    static long toGrid(double v) {
        if (!(Math.abs(v) < TERM_LIMIT)) {
            throw new ArithmeticException("an expert output (" + v + " grid units) is outside the exact combine's range: "
                    + "it exceeds 2^47 times the grid of its token, or is not finite");
        }
        return (long) Math.rint(v);
    }

    /** {@code out[outOff + i] = acc[accOff + i] · 2^grid}, rounded once to float. */
    public static void toFloat(long[] acc, int accOff, int n, int grid, float[] out, int outOff) {
        for (int i = 0; i < n; i++) {
            out[outOff + i] = Math.scalb((float) acc[accOff + i], grid);
        }
    }

    /** Whether every value of {@code acc[0, n)} fits 32 bits (the compact wire form). */
    public static boolean fitsInt(long[] acc, int n) {
        for (int i = 0; i < n; i++) {
            if (acc[i] != (int) acc[i]) {
                return false;
            }
        }
        return true;
    }
}
