/* GRU cell (PyTorch form), element-wise over one layer. gx = W_i x + b_i and gh = W_h h (with b_hn
 * on the n rows) are Q3.12, the biases added by requantize, gx also carrying the tables' origin
 * 32768 (see lut); rows are unit by unit, so unit j's r, z, n are gx[3j], gx[3j + 1], gx[3j + 2]:
 *   r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z)
 *   n = tanh(gx_n + r * gh_n)
 *   h' = (1 - z) * n + z * h = n + z * (h - n)                     (Q0.15)                    */
static void gru_cell(const layer_q *L, const int32_t *gx, const int32_t *gh, int16_t *h)
{
    const int16_t *const end = h + L->hidden;
    for (; h != end; ++h) {
        int32_t xr, xz, xn, hr, hz, hn, r, z, rh, n;  /* unit j's gx and gh, then its gates */
        PREFIX_LOAD2(xr, xz, gx); xn = *gx++;
        PREFIX_LOAD2(hr, hz, gh); hn = *gh++;
        r = lut(SIGMOID_Q15, xr + hr);
        z = lut(SIGMOID_Q15, xz + hz);
        /* r * gh_n rounded to Q3.12, (r * gh_n + 2^14) >> 15, as one SMMULR: (r 2^16)(2 gh_n) / 2^32
         * rounded (exact: 0 <= r < 2^15, and |2 gh_n| < 2^31 was checked at export) */
        rh = smmulr(r * 65536, hn * 2);
        n = lut(TANH_Q15, xn + rh);
        *h = (int16_t)(n + mul_q15(z, *h - n));
    }
}
