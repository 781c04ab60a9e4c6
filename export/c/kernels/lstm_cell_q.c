/* LSTM cell, element-wise over one layer. Gate pre-activations gx + gh in Q3.12, gx = W_i x + b +
 * 32768 (the bias and the tables' origin added by requantize); rows are unit by unit, so unit j's
 * i, f, g, o are gx[4j] .. gx[4j + 3]:
 *   i = sigmoid(pre_i), f = sigmoid(pre_f), g = tanh(pre_g), o = sigmoid(pre_o)   (Q0.15)
 *   c' = f * c + i * g         (c in Q(15-cf).cf, saturated to int16)
 *   h' = o * tanh(c')          (Q0.15)                                             */
static void lstm_cell(const layer_q *L, const int32_t *gx, const int32_t *gh, int16_t *h, int16_t *c)
{
    const int32_t ig_shift = 30 - L->cell_frac;  /* i * g is Q30: to the cell's Q(15-cf).cf */
    const int32_t up = L->cell_up, down = L->cell_down;
    const int16_t *const end = h + L->hidden;
    for (; h != end; ++h, ++c) {
        int32_t xi, xf, xg, xo, hi, hf, hg, ho, i, f, g, o;  /* unit j's gx and gh, then its gates */
        PREFIX_LOAD2(xi, xf, gx); PREFIX_LOAD2(xg, xo, gx);
        PREFIX_LOAD2(hi, hf, gh); PREFIX_LOAD2(hg, ho, gh);
        i = lut(SIGMOID_Q15, xi + hi);
        f = lut(SIGMOID_Q15, xf + hf);
        g = lut(TANH_Q15, xg + hg);
        o = lut(SIGMOID_Q15, xo + ho);
        const int32_t cn = sat16(mul_q15(f, *c) + rshift_round(i * g, ig_shift));
        *c = (int16_t)cn;
        /* tanh's table input, c' in Q3.12 plus the origin 32768: rshift_round(c', cf - 12) when
         * cf > 12, else c' * 2^(12 - cf), as one expression: ((c' 2^up >> down) + 1 + 2 * 32768) >> 1
         * with up = max(0, 13 - cf), down = max(0, cf - 13) (reference.py: cell_table_input) */
        *h = (int16_t)mul_q15(o, lut(TANH_Q15, ((cn * (1 << up) >> down) + 65537) >> 1));
    }
}
