#if !PREFIX_USE_DSP && !PREFIX_USE_SSE2 && !PREFIX_USE_NEON
/* acc[r] = W[r] . a for the 4 rows of one group, returning w past the group (where the next
 * group starts): the contract of every dot4 variant.
 * W: the group's n/4 blocks of 4 rows x 4 bytes, the bytes of a row's block in the order a c b d
 * (what SXTB16 wants); a: int16 [n], n a multiple of 4 (>= 4); both word-aligned.
 * This portable loop is the reference kernel: plain C99, the same integers as
 * export/c/reference.py, undoing the a c b d byte order. */
PREFIX_INLINE const int8_t *dot4(const int8_t *w, const int16_t *a, int32_t n, int32_t *acc)
{
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, k;
    for (k = n >> 2; k > 0; --k, a += 4, w += 16) {
        s0 += w[0] * a[0] + w[1] * a[2] + w[2] * a[1] + w[3] * a[3];
        s1 += w[4] * a[0] + w[5] * a[2] + w[6] * a[1] + w[7] * a[3];
        s2 += w[8] * a[0] + w[9] * a[2] + w[10] * a[1] + w[11] * a[3];
        s3 += w[12] * a[0] + w[13] * a[2] + w[14] * a[1] + w[15] * a[3];
    }
    acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
    return w;
}
#endif
