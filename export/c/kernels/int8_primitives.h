/* ---- integer primitives (export/c/reference.py: rshift_round, sat16, smmulr, requantize, lut) ---- */
#if defined(__GNUC__)
#define PREFIX_INLINE static inline __attribute__((always_inline, unused)) /* unused: a GRU has no use for sat16 */
#else
#define PREFIX_INLINE static inline
#endif

/* (x + 2^(s-1)) >> s: divide by 2^s, rounding half up (s >= 1); computed as ((x >> (s-1)) + 1) >> 1,
 * which is the same integer and cannot overflow. */
PREFIX_INLINE int32_t rshift_round(int32_t x, int32_t s) { return ((x >> (s - 1)) + 1) >> 1; }

/* clamp to [-32768, 32767] (one SSAT where the core has it) */
PREFIX_INLINE int32_t sat16(int32_t x)
{
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT && !defined(PREFIX_PORTABLE)
#if defined(__GNUC__)  /* gcc 12's ACLE __ssat macro trips -Wsign-conversion inside itself */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-conversion"
#endif
    return __ssat(x, 16);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#else
    return x < -32768 ? -32768 : (x > 32767 ? 32767 : x);
#endif
}

/* a, b = p[0], p[1] and p += 2, for a word-aligned int32_t *p: one LDRD with post-increment on
 * Thumb-2 (gcc would not pair the two loads itself), plain C elsewhere. */
#if defined(__GNUC__) && defined(__thumb2__) && !defined(PREFIX_PORTABLE)
#define PREFIX_LOAD2(a, b, p) __asm__("ldrd %0, %1, [%2], #8" : "=r"(a), "=r"(b), "+r"(p) : : "memory")
#else
#define PREFIX_LOAD2(a, b, p) do { (a) = (p)[0]; (b) = (p)[1]; (p) += 2; } while (0)
#endif

/* (a * b + 2^31) >> 32: high word of the 64-bit product, rounded (one SMMULR with DSP). */
PREFIX_INLINE int32_t smmulr(int32_t a, int32_t b)
{
#if PREFIX_USE_DSP
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
#endif
}

/* rshift_round(a * b, 15) for a Q0.15 gate 0 <= a < 2^15 and |b| < 2^16: with DSP one SMMULR,
 * (a 2^16)(2 b) / 2^32 rounded, the same integer (the product is a * b * 2^17, and SMMULR adds
 * 2^31 = 2^14 * 2^17 before the shift). */
PREFIX_INLINE int32_t mul_q15(int32_t a, int32_t b)
{
#if PREFIX_USE_DSP
    return smmulr(a * 65536, b * 2);
#else
    return rshift_round(a * b, 15);
#endif
}

/* v >> (word & 31), for a word whose low byte is a shift of 0..30 (requantize's rq[1]). On 32-bit
 * Arm one ASR by register, which reads only the register's low byte; elsewhere the & 31 costs
 * nothing (x86 and aarch64 shifts mask the count themselves). */
PREFIX_INLINE int32_t asr_low_byte(int32_t v, int32_t word)
{
#if defined(__GNUC__) && defined(__thumb2__) && !defined(PREFIX_PORTABLE)
    int32_t r;
    __asm__("asr %0, %1, %2" : "=r"(r) : "r"(v), "r"(word));
    return r;
#else
    return v >> (word & 31);
#endif
}

/* (acc << ls) * (mult / 2^32) / 2^rs, rounded, plus the row's bias b: rescales a row's accumulator
 * (its int8 weight scale times the input scale) to the output format and adds the bias there;
 * mult in [2^30, 2^31), ls >= 0, rs >= 1. The caller applies ls (most matrices have none).
 * rq = {mult, word} with word = (1 + 2 b) * 256 + (rs - 1) (reference.py: requant_word): the low
 * byte is rshift_round's first shift, the rest its rounding 1 with the bias folded in, since
 * ((v >> (rs - 1)) + 1 + 2 b) >> 1 == rshift_round(v, rs) + b. One LDRD, SMMULR, ASR, ADD (with the
 * word shifted down by 8 for free) and ASR: the bias costs no instruction. */
PREFIX_INLINE int32_t requantize(int32_t acc, const int32_t *rq)
{
    return (asr_low_byte(smmulr(acc, rq[0]), rq[1]) + (rq[1] >> 8)) >> 1;
}

/* sigmoid or tanh by table: u = v + 32768 for v in Q3.12 (u saturated to [0, 65535], i.e. v to
 * [-8, 8)), result Q0.15. 257 samples 1/16 apart, linear interpolation with u's low 8 bits.
 * The gate pre-activations arrive with the 32768 already in them: the requantization words of the
 * W_ih rows carry it with the bias (codegen: LUT_ORIGIN). Each word of the table packs the step to the next sample
 * and the sample, {hi - lo, lo} (low, high halfword; reference.py: pack_table), so that one SMLAD
 * computes (hi - lo) * frac + lo * 256 + 128 from the word and frac | 256 << 16 (one ORR), and the
 * result is that >> 8: the same integer as lo + (((hi - lo) * frac + 128) >> 8). */
PREFIX_INLINE int32_t lut(const int32_t *table, int32_t u)
{
    int32_t k, frac, t;
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT && !defined(PREFIX_PORTABLE)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-conversion"
#endif
    u = (int32_t)__usat(u, 16);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#else
    u = u < 0 ? 0 : (u > 65535 ? 65535 : u);
#endif
    k = u >> 8;
    frac = u & 255;
    t = table[k];
#if PREFIX_USE_DSP
    return __smlad(t, frac | (256 << 16), 128) >> 8;
#else
    return (t >> 16) + (((int16_t)(uint16_t)t * frac + 128) >> 8);
#endif
}
