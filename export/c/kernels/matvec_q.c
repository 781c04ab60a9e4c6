/* y[r] = requantize(W[r] . a) for r < rows (a multiple of 4): a matrix-vector product, 4 rows at a time
 * (reference.py: matvec). ls: a left shift per row applied before the multiply, or null when the
 * matrix has none. */
static void matvec_q(const int8_t *W, const int16_t *a, int32_t n, int32_t rows, const int32_t *rq,
                     const int8_t *ls, int32_t *y)
{
    int32_t r, acc[4];
    for (r = 0; r < rows; r += 4) {
        dot4(W + r * n, a, n, acc);
        if (ls) {
            acc[0] *= 1 << ls[r]; acc[1] *= 1 << ls[r + 1]; acc[2] *= 1 << ls[r + 2]; acc[3] *= 1 << ls[r + 3];
        }
        y[r] = requantize(acc[0], rq + 2 * r);
        y[r + 1] = requantize(acc[1], rq + 2 * r + 2);
        y[r + 2] = requantize(acc[2], rq + 2 * r + 4);
        y[r + 3] = requantize(acc[3], rq + 2 * r + 6);
    }
}
