/* y[r] = requantize(W[r] . a) for r < rows (a multiple of 4): a matrix-vector product, 4 rows at a time
 * (reference.py: matvec). ls: a left shift per row applied before the multiply, or null when the
 * matrix has none. The weights, the requantization words and y are walked with pointers: the groups
 * of 4 rows lie one after another, so nothing is recomputed per group. with_ls is a constant in each
 * of matvec_q's two calls, so the compiler builds one loop with the shifts and one without. */
PREFIX_INLINE void matvec_rows(const int8_t *W, const int16_t *a, int32_t n, int32_t rows, const int32_t *rq,
                               const int8_t *ls, int32_t *y, const int with_ls)
{
    const int32_t *const end = y + rows;
    do {
        int32_t acc[4];
        W = dot4(W, a, n, acc);
        if (with_ls) {
            acc[0] *= 1 << ls[0]; acc[1] *= 1 << ls[1]; acc[2] *= 1 << ls[2]; acc[3] *= 1 << ls[3];
            ls += 4;
        }
        y[0] = requantize(acc[0], rq);
        y[1] = requantize(acc[1], rq + 2);
        y[2] = requantize(acc[2], rq + 4);
        y[3] = requantize(acc[3], rq + 6);
        rq += 8;
        y += 4;
    } while (y != end);
}

static void matvec_q(const int8_t *W, const int16_t *a, int32_t n, int32_t rows, const int32_t *rq,
                     const int8_t *ls, int32_t *y)
{
    if (ls)
        matvec_rows(W, a, n, rows, rq, ls, y, 1);
    else
        matvec_rows(W, a, n, rows, rq, ls, y, 0);
}
