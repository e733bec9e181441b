/*
 * crc32c - see crc32c.h. Owns every CRC-32C computation of the library and
 * the choice of implementation; the record format only calls fb__crc32c.
 *
 * Conventions used by the comments below. CRC-32C works on bit-reflected
 * polynomials over GF(2): a w-bit value v stands for the polynomial whose
 * coefficient of x^(w-1-i) is bit i of v, so bit 0 is the highest power.
 * Loaded little-endian, the bytes of a message are exactly such a value
 * (bit 0 of the first byte is its first bit, the highest power). The CRC
 * register c after a message M of L bits, started from register c0, is
 *     c = (c0 * x^L + M * x^32) mod P,
 * P the Castagnoli polynomial. Everything below rests on that formula being
 * linear in c0 and M.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82f63b78u /* P without its x^32 term, reflected */

static uint32_t table[8][256];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int best_impl = FB__CRC_TABLE;

/* Multiplying by x moves every coefficient one power up, which is one bit
 * down in the reflected form; the x^31 term (bit 0) becomes x^32, and x^32
 * mod P is POLY. */
static uint32_t mul_x(uint32_t v)
{
    return (v >> 1) ^ ((v & 1) ? POLY : 0);
}

/* a * b mod P, reflected, bit by bit (start-up only): Horner's rule over
 * the coefficients of a from its highest power (bit 0) down. */
static uint32_t mulmod(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 32; i++) {
        r = mul_x(r);
        if (a & (1u << i)) {
            r ^= b;
        }
    }
    return r;
}

/* x^e mod P, reflected, by square and multiply (start-up only). */
static uint32_t xpow_mod(uint64_t e)
{
    uint32_t r = 0x80000000u;    /* x^0 */
    uint32_t base = 0x40000000u; /* x^1 */
    for (; e != 0; e >>= 1) {
        if (e & 1) {
            r = mulmod(r, base);
        }
        base = mulmod(base, base);
    }
    return r;
}

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = mul_x(c);
        }
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
        }
    }
}

/* Slicing-by-8: eight table lookups per 8 bytes. */
static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc; /* little-endian hosts only; checked in the build */
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * The crc32 instruction has a latency of 3 cycles and a throughput of one
 * per cycle, so a single dependency chain runs at a third of the speed the
 * CPU can reach. Long inputs are therefore cut into rounds of three lanes of
 * LANE bytes each, computed as three independent chains in one loop, and
 * joined with shift_lane(): by the formula at the top,
 *     crc(A || B) = shift_|B|(crc(A)) ^ crc_from_zero(B),
 * where shift_L (multiplication by x^(8L) mod P) is linear in the register
 * and tabulated once per byte position.
 */
#define LANE 2048

static uint32_t shift_table[4][256];

static void shift_init(void)
{
    uint32_t basis[32];
    uint32_t lane_shift = xpow_mod(8 * LANE);
    for (int bit = 0; bit < 32; bit++) {
        basis[bit] = mulmod(1u << bit, lane_shift);
    }
    for (int k = 0; k < 4; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int bit = 0; bit < 8; bit++) {
                if (b & (1u << bit)) {
                    v ^= basis[8 * k + bit];
                }
            }
            shift_table[k][b] = v;
        }
    }
}

static inline uint32_t shift_lane(uint32_t c)
{
    return shift_table[0][c & 0xff] ^ shift_table[1][(c >> 8) & 0xff] ^
           shift_table[2][(c >> 16) & 0xff] ^ shift_table[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = crc;
    while (n >= 3 * LANE) {
        uint64_t c1 = 0, c2 = 0;
        /* Unrolled so that the loop overhead does not compete with the
         * three chains for issue slots. */
#pragma GCC unroll 8
        for (size_t i = 0; i < LANE; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + LANE + i, 8);
            memcpy(&w2, p + 2 * LANE + i, 8);
            c = _mm_crc32_u64(c, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        c = shift_lane(shift_lane((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * LANE;
        n -= 3 * LANE;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) {
        c32 = _mm_crc32_u8(c32, *p++);
    }
    return c32;
}

/*
 * Folding with carry-less multiplication (Gopal et al., "Fast CRC
 * computation for generic polynomials using PCLMULQDQ", Intel 2009).
 *
 * An accumulator X is a 128-bit block of the message (reflected, as above)
 * standing for X(x) * x^R, R the number of message bits after it. Write
 * X = H * x^64 + L with H its first 8 bytes (the low 64 bits of the
 * register, holding the higher powers) and L the last 8. To move X
 * forward by D bits, onto the block that starts D bits later, replace it by
 * something congruent mod P to
 *     X * x^D = H * x^(D+64) + L * x^D
 *            == H * (x^(D+64) mod P) + L * (x^D mod P)    (mod P),
 * a polynomial of degree < 96 that fits the 128 bits of that later block
 * and is simply XORed into it. PCLMULQDQ multiplies two 64-bit values; on
 * reflected operands its 128-bit result, read reflected, is the product
 * times x (the top bit of the reflected product is always zero, so
 * everything sits one place lower than the product). Hence the constants
 * are x^(D+63) mod P for H and x^(D-1) mod P for L, each a 32-bit reflected
 * value put in the high half of a 64-bit operand (bits 32..63 of a 64-bit
 * reflected value are the powers x^31..x^0). They are computed at start-up
 * by fold_key().
 *
 * Running several accumulators over interleaved 16-byte blocks hides the
 * multiplier's latency; at the end they are folded into one by D = 128, any
 * whole 16-byte blocks left over are folded in the same way, and the last
 * accumulator Z (congruent mod P to everything so far) becomes the register
 * Z * x^32 mod P, which is what the crc32 instruction computes from a zero
 * register over the 16 bytes of Z. The tail and the unaligned head go
 * through crc_hw. The starting register c0 is XORed into the first 32
 * message bits: c0 * x^L == (c0 * x^(L-32)) * x^32, which is c0 placed at
 * the start of M.
 */
#define XLANES 8 /* 128-bit accumulators of crc_pclmul: 128 bytes a round */
#define YLANES 4 /* 256-bit accumulators of crc_vpclmul: 128 bytes a round */
#define FOLD_ROUND 128
#define FOLD_MIN 256 /* shorter inputs: crc_hw; leaves room for alignment */

typedef struct {
    uint64_t h, l; /* multipliers of the low (H) and high (L) 64-bit halves */
} fold_key_t;

static fold_key_t key_round, key_128;

static fold_key_t fold_key(unsigned dist_bits)
{
    fold_key_t k = {(uint64_t)xpow_mod(dist_bits + 63) << 32, (uint64_t)xpow_mod(dist_bits - 1)
                                                                  << 32};
    return k;
}

__attribute__((target("sse4.2,pclmul"))) static inline __m128i fold_16(__m128i x, __m128i key,
                                                                       __m128i next)
{
    __m128i h = _mm_clmulepi64_si128(x, key, 0x00);
    __m128i l = _mm_clmulepi64_si128(x, key, 0x11);
    return _mm_xor_si128(_mm_xor_si128(h, l), next);
}

__attribute__((target("sse4.2,pclmul"))) static inline __m128i key_vec(fold_key_t k)
{
    return _mm_set_epi64x((long long)k.l, (long long)k.h);
}

/* Folds the whole 16-byte blocks of p into z and finishes the CRC with the
 * rest (see above). */
__attribute__((target("sse4.2,pclmul"))) static uint32_t fold_finish(__m128i z, const uint8_t *p,
                                                                     size_t n)
{
    __m128i k = key_vec(key_128);
    while (n >= 16) {
        z = fold_16(z, k, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(z));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(z, 1));
    return crc_hw((uint32_t)c, p, n);
}

/* The number of head bytes before p is `align`-byte aligned. */
static size_t head_len(const uint8_t *p, size_t align)
{
    return (size_t)(-(uintptr_t)p & (align - 1));
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t crc_pclmul(uint32_t crc, const uint8_t *p,
                                                                    size_t n)
{
    if (n < FOLD_MIN) {
        return crc_hw(crc, p, n);
    }
    size_t head = head_len(p, 16);
    crc = crc_hw(crc, p, head);
    p += head;
    n -= head;
    __m128i x[XLANES];
#pragma GCC unroll 8
    for (int i = 0; i < XLANES; i++) {
        x[i] = _mm_load_si128((const __m128i *)p + i);
    }
    x[0] = _mm_xor_si128(x[0], _mm_cvtsi32_si128((int)crc));
    p += FOLD_ROUND;
    n -= FOLD_ROUND;
    __m128i k = key_vec(key_round);
    while (n >= FOLD_ROUND) {
#pragma GCC unroll 8
        for (int i = 0; i < XLANES; i++) {
            x[i] = fold_16(x[i], k, _mm_load_si128((const __m128i *)p + i));
        }
        p += FOLD_ROUND;
        n -= FOLD_ROUND;
    }
    __m128i k16 = key_vec(key_128);
    __m128i z = x[0];
    for (int i = 1; i < XLANES; i++) {
        z = fold_16(z, k16, x[i]);
    }
    return fold_finish(z, p, n);
}

/* The same with two 128-bit blocks per register: the lanes of a 256-bit
 * VPCLMULQDQ are independent, so each half is its own accumulator and both
 * use the same key. ymm_start loads the first round of p (32-byte aligned)
 * with the register crc in it, ymm_fold folds in the next round, ymm_reduce
 * folds the accumulators into one 128-bit block, the first one first. */
#define YMM_TARGET "sse4.2,pclmul,avx2,vpclmulqdq"

__attribute__((target(YMM_TARGET))) static inline void ymm_start(__m256i y[YLANES],
                                                                 const uint8_t *p, uint32_t crc)
{
#pragma GCC unroll 8
    for (int i = 0; i < YLANES; i++) {
        y[i] = _mm256_load_si256((const __m256i *)p + i);
    }
    y[0] = _mm256_xor_si256(y[0], _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, (int)crc));
}

__attribute__((target(YMM_TARGET))) static inline void ymm_fold(__m256i y[YLANES], __m256i k,
                                                                const uint8_t *p)
{
#pragma GCC unroll 8
    for (int i = 0; i < YLANES; i++) {
        __m256i h = _mm256_clmulepi64_epi128(y[i], k, 0x00);
        __m256i l = _mm256_clmulepi64_epi128(y[i], k, 0x11);
        y[i] = _mm256_xor_si256(_mm256_xor_si256(h, l), _mm256_load_si256((const __m256i *)p + i));
    }
}

__attribute__((target(YMM_TARGET))) static inline __m128i ymm_reduce(const __m256i y[YLANES])
{
    __m128i k16 = key_vec(key_128);
    __m128i z = _mm256_castsi256_si128(y[0]);
    z = fold_16(z, k16, _mm256_extracti128_si256(y[0], 1));
    for (int i = 1; i < YLANES; i++) {
        z = fold_16(z, k16, _mm256_castsi256_si128(y[i]));
        z = fold_16(z, k16, _mm256_extracti128_si256(y[i], 1));
    }
    return z;
}

__attribute__((target(YMM_TARGET))) static uint32_t crc_vpclmul(uint32_t crc, const uint8_t *p,
                                                                size_t n)
{
    if (n < FOLD_MIN) {
        return crc_hw(crc, p, n);
    }
    size_t head = head_len(p, 32);
    crc = crc_hw(crc, p, head);
    p += head;
    n -= head;
    __m256i y[YLANES];
    ymm_start(y, p, crc);
    p += FOLD_ROUND;
    n -= FOLD_ROUND;
    __m256i k = _mm256_broadcastsi128_si256(key_vec(key_round));
    while (n >= FOLD_ROUND) {
        ymm_fold(y, k, p);
        p += FOLD_ROUND;
        n -= FOLD_ROUND;
    }
    return fold_finish(ymm_reduce(y), p, n);
}

/*
 * Fused: on CPUs where both the carry-less multiplier and the crc32
 * instruction run at about 8 bytes a cycle on different execution units
 * (AMD Zen 3: VPCLMULQDQ ymm every 2 cycles, crc32 every cycle), one loop
 * drives both. The input is cut into rounds of FUSED_ROUND bytes; the first
 * 128 bytes of each round's worth go to the folding accumulators, in one
 * contiguous region V at the front, and the rest to three crc32 chains, each
 * over its own contiguous region C0, C1, C2 of `lane` bytes after V. By the
 * formula at the top, with shift(c) = c * x^(8 lane) mod P,
 *     crc(V C0 C1 C2) = shift(shift(shift(crc(V)) ^ c0) ^ c1) ^ c2,
 * c0..c2 the chains started from zero. lane depends on n, so its shift is
 * built per call from the start-up table shift_key[k] = x^(8*2^k - 33) mod P
 * with mul_x33 (a*b*x^33 mod P: one PCLMULQDQ and one crc32), one step per
 * set bit of lane.
 */
#define FUSED_LANE_ROUND 40 /* bytes per chain per round: the crc32 share */
#define FUSED_ROUND (FOLD_ROUND + 3 * FUSED_LANE_ROUND)
#define FUSED_MIN 2048
#define SHIFT_KEYS 56 /* lanes below 2^56 bytes; longer inputs: crc_vpclmul */

static uint32_t shift_key[SHIFT_KEYS];

/* a * b * x^33 mod P: on 32-bit values in the low halves, PCLMULQDQ gives
 * a * b * x^65 in 128 reflected bits, entirely in the low 64, which read as
 * a 64-bit value Q is a * b * x; crc32 from a zero register makes that
 * Q * x^32 mod P. */
__attribute__((target("sse4.2,pclmul"))) static inline uint32_t mul_x33(uint32_t a, uint32_t b)
{
    __m128i q = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)a), _mm_cvtsi32_si128((int)b), 0x00);
    return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(q));
}

/* x^(8 bytes - 33) mod P for bytes a multiple of 8 in [8, 2^SHIFT_KEYS). */
__attribute__((target("sse4.2,pclmul"))) static uint32_t shift_key_for(uint64_t bytes)
{
    uint32_t k = 0;
    int first = 1;
    for (int b = 3; b < SHIFT_KEYS; b++) {
        if (bytes & ((uint64_t)1 << b)) {
            /* k * x^(8*2^b - 33) * x^33 adds 8*2^b to k's exponent. */
            k = first ? shift_key[b] : mul_x33(k, shift_key[b]);
            first = 0;
        }
    }
    return k;
}

__attribute__((target(YMM_TARGET))) static uint32_t crc_fused(uint32_t crc, const uint8_t *p,
                                                              size_t n)
{
    if (n < FUSED_MIN || (uint64_t)n >= ((uint64_t)1 << SHIFT_KEYS)) {
        return crc_vpclmul(crc, p, n);
    }
    size_t head = head_len(p, 32);
    crc = crc_hw(crc, p, head);
    p += head;
    n -= head;
    size_t rounds = n / FUSED_ROUND; /* >= 2: FUSED_MIN is large enough */
    size_t lane = rounds * FUSED_LANE_ROUND;
    const uint8_t *q = p + rounds * FOLD_ROUND;
    __m256i y[YLANES];
    ymm_start(y, p, crc);
    __m256i k = _mm256_broadcastsi128_si256(key_vec(key_round));
    uint64_t c0 = 0, c1 = 0, c2 = 0;
    for (size_t r = 0; r < rounds; r++) {
        if (r + 1 < rounds) {
            ymm_fold(y, k, p + (r + 1) * FOLD_ROUND);
        }
        const uint8_t *w = q + r * FUSED_LANE_ROUND;
#pragma GCC unroll 8
        for (size_t i = 0; i < FUSED_LANE_ROUND; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, w + i, 8);
            memcpy(&w1, w + lane + i, 8);
            memcpy(&w2, w + 2 * lane + i, 8);
            c0 = _mm_crc32_u64(c0, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
    }
    uint32_t c = fold_finish(ymm_reduce(y), p, 0);
    uint32_t sk = shift_key_for(lane);
    c = mul_x33(c, sk) ^ (uint32_t)c0;
    c = mul_x33(c, sk) ^ (uint32_t)c1;
    c = mul_x33(c, sk) ^ (uint32_t)c2;
    size_t done = rounds * FUSED_ROUND;
    return crc_hw(c, p + done, n - done);
}
#endif

static void init(void)
{
    table_init();
#if defined(__x86_64__)
    shift_init();
    key_round = fold_key(8 * FOLD_ROUND);
    key_128 = fold_key(128);
    for (int b = 3; b < SHIFT_KEYS; b++) {
        shift_key[b] = xpow_mod(((uint64_t)8 << b) - 33);
    }
    for (int i = FB__CRC_NIMPL - 1; i > FB__CRC_TABLE; i--) {
        if (fb__crc32c_supported(i)) {
            best_impl = i;
            break;
        }
    }
#endif
}

int fb__crc32c_supported(int impl)
{
    switch (impl) {
    case FB__CRC_TABLE:
        return 1;
#if defined(__x86_64__)
    case FB__CRC_SSE42:
        return __builtin_cpu_supports("sse4.2") != 0;
    case FB__CRC_PCLMUL:
        return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
    case FB__CRC_VPCLMUL:
    case FB__CRC_FUSED:
        /* avx2 also says the OS saves the 256-bit registers. */
        return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq");
#endif
    default:
        return 0;
    }
}

const char *fb__crc32c_name(int impl)
{
    static const char *const names[FB__CRC_NIMPL] = {"table", "sse4.2", "pclmulqdq", "vpclmulqdq",
                                                     "fused"};
    return impl >= 0 && impl < FB__CRC_NIMPL ? names[impl] : "?";
}

int fb__crc32c_best(void)
{
    pthread_once(&init_once, init);
    return best_impl;
}

/* Runs impl, known to be supported, on the inverted register. */
static uint32_t run(int impl, uint32_t crc, const void *p, size_t n)
{
    switch (impl) {
#if defined(__x86_64__)
    case FB__CRC_SSE42:
        return crc_hw(crc, p, n);
    case FB__CRC_PCLMUL:
        return crc_pclmul(crc, p, n);
    case FB__CRC_VPCLMUL:
        return crc_vpclmul(crc, p, n);
    case FB__CRC_FUSED:
        return crc_fused(crc, p, n);
#endif
    default:
        return crc_soft(crc, p, n);
    }
}

uint32_t fb__crc32c_with(int impl, uint32_t crc, const void *p, size_t n)
{
    pthread_once(&init_once, init);
    return ~run(fb__crc32c_supported(impl) ? impl : FB__CRC_TABLE, ~crc, p, n);
}

uint32_t fb__crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&init_once, init);
    return ~run(best_impl, ~crc, p, n);
}
