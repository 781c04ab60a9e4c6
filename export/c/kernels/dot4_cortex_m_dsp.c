#if PREFIX_USE_DSP
/* SXTB16 with ROR #8: bytes 1 and 3 of v sign-extended into two halfwords. */
PREFIX_INLINE int32_t sxtb16_ror8(int32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* lo, hi = the two words at p; p += 8 bytes (one LDRD with post-increment; p word-aligned). */
#define PREFIX_LDRD_PI(lo, hi, p) __asm__("ldrd %0, %1, [%2], #8" : "=r"(lo), "=r"(hi), "+r"(p) : : "memory")

/* dot4 (contract in dot4_portable.c) for cores with the DSP extension (Cortex-M4/M7/M33/M55).
 * Per 4 columns, 19 instructions for 16 multiply-accumulates (21 with the loop's count and
 * branch): 1 LDRD of two activation pairs (xa, xb), 2 LDRDs of the 4 rows' weight words, then
 * per row SXTB16 -> (a, b) and SXTB16 ROR 8 -> (c, d), and two SMLADs. (Two blocks per pass
 * made gcc 12 spill: more instructions, not fewer.) */
static const int8_t *dot4(const int8_t *w, const int16_t *a, int32_t n, int32_t *acc)
{
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, k;
    k = n >> 2;                          /* n >= 4: every layer has at least one column block */
    do {
        int32_t xa, xb, w0, w1, w2, w3;  /* packed halfwords / bytes, as ACLE's int16x2_t / int8x4_t */
        PREFIX_LDRD_PI(xa, xb, a);
        PREFIX_LDRD_PI(w0, w1, w);
        PREFIX_LDRD_PI(w2, w3, w);
        s0 = __smlad(__sxtb16(w0), xa, s0); s0 = __smlad(sxtb16_ror8(w0), xb, s0);
        s1 = __smlad(__sxtb16(w1), xa, s1); s1 = __smlad(sxtb16_ror8(w1), xb, s1);
        s2 = __smlad(__sxtb16(w2), xa, s2); s2 = __smlad(sxtb16_ror8(w2), xb, s2);
        s3 = __smlad(__sxtb16(w3), xa, s3); s3 = __smlad(sxtb16_ror8(w3), xb, s3);
    } while (--k);
    acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
    return w;
}
#endif
