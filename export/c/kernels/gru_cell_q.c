/* GRU cell (PyTorch form), element-wise over one layer (gx = W_i x + b_i, gh = W_h h with b_hn on
 * the n rows; both Q3.12, the biases added by requantize; gx also carries the tables' origin
 * 32768, see lut):
 *   r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z)
 *   n = tanh(gx_n + r * gh_n)
 *   h' = (1 - z) * n + z * h = n + z * (h - n)                     (Q0.15)                    */
static void gru_cell(const layer_q *L, const int32_t *gx, const int32_t *gh, int16_t *h)
{
    const int32_t H = L->hidden;
    int32_t j;
    for (j = 0; j < H; ++j) {
        const int32_t r = lut(SIGMOID_Q15, gx[j] + gh[j]);
        const int32_t z = lut(SIGMOID_Q15, gx[H + j] + gh[H + j]);
        /* r * gh_n rounded to Q3.12: (r * gh_n + 2^14) >> 15 as one SMMULR, (r 2^16)(2 gh_n) / 2^32
         * (exact: 0 <= r < 2^15, and |2 gh_n| < 2^31 was checked at export) */
        const int32_t rh = smmulr(r * 65536, gh[2 * H + j] * 2);
        const int32_t n = lut(TANH_Q15, gx[2 * H + j] + rh);
        h[j] = (int16_t)(n + rshift_round(z * (h[j] - n), 15));
    }
}
