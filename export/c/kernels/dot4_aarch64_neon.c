#if PREFIX_USE_NEON
/* dot4 (contract in dot4_portable.c) on aarch64 (Raspberry Pi 3/4/5). Per 4 columns, 11
 * instructions for 16 multiply-accumulates: the group's 16 weight bytes widened to int16 (rows 0-1
 * in one register, rows 2-3 in another); one table lookup puts the 4 activations in the weights'
 * a c b d order, twice; SMLAL (low halves) and SMLAL2 (high halves) multiply 4 lanes and add them
 * to one row's 4 int32 partial sums, which are added together after the last block (integer sums:
 * the same result in any order). */
PREFIX_INLINE const int8_t *dot4(const int8_t *w, const int16_t *a, int32_t n, int32_t *acc)
{
    const uint8x16_t acbd = vreinterpretq_u8_u64(vdupq_n_u64(0x0706030205040100ULL)); /* halfwords 0 2 1 3, twice */
    int32x4_t r0 = vdupq_n_s32(0), r1 = r0, r2 = r0, r3 = r0;
    int32_t k;
    for (k = n >> 2; k > 0; --k, a += 4, w += 16) {
        const int8x16_t wb = vld1q_s8(w);
        const int16x8_t w01 = vmovl_s8(vget_low_s8(wb)), w23 = vmovl_high_s8(wb);
        const uint8x16_t xb = vcombine_u8(vreinterpret_u8_s16(vld1_s16(a)), vdup_n_u8(0));
        const int16x8_t xx = vreinterpretq_s16_u8(vqtbl1q_u8(xb, acbd));
        r0 = vmlal_s16(r0, vget_low_s16(w01), vget_low_s16(xx));
        r1 = vmlal_high_s16(r1, w01, xx);
        r2 = vmlal_s16(r2, vget_low_s16(w23), vget_low_s16(xx));
        r3 = vmlal_high_s16(r3, w23, xx);
    }
    acc[0] = vaddvq_s32(r0); acc[1] = vaddvq_s32(r1); acc[2] = vaddvq_s32(r2); acc[3] = vaddvq_s32(r3);
    return w;
}
#endif
