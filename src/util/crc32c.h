/*
 * crc32c - CRC-32C (Castagnoli), the checksum of every record and header on
 * disk. Several implementations give the same values (crc32c("123456789") =
 * 0xe3069283): for long inputs carry-less-multiply folding (VPCLMULQDQ on
 * 256-bit vectors, alone or together with crc32 instruction streams, or
 * PCLMULQDQ on 128-bit ones), the SSE4.2 crc32 instruction, and a table for
 * CPUs without either. fb__crc32c picks the fastest this CPU
 * runs; the others are reachable for tests and benchmarks.
 */
#ifndef FB_UTIL_CRC32C_H
#define FB_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) with n bytes of p. Thread-safe. */
uint32_t fb__crc32c(uint32_t crc, const void *p, size_t n);

/* The implementations, slowest first. */
enum {
    FB__CRC_TABLE,   /* slicing-by-8 tables, any CPU */
    FB__CRC_SSE42,   /* crc32 instruction, three interleaved streams */
    FB__CRC_PCLMUL,  /* 128-bit carry-less-multiply folding */
    FB__CRC_VPCLMUL, /* 256-bit carry-less-multiply folding (AVX2 + VPCLMULQDQ) */
    FB__CRC_FUSED,   /* VPCLMULQDQ folding and three crc32 streams in one loop */
    FB__CRC_NIMPL
};

/* 1 if this CPU can run implementation impl (an FB__CRC_* value), else 0. */
int fb__crc32c_supported(int impl);
/* A short name of impl ("table", "sse4.2", ...), "?" for an unknown value. */
const char *fb__crc32c_name(int impl);
/* The implementation fb__crc32c uses on this CPU. */
int fb__crc32c_best(void);
/* fb__crc32c computed by impl, which must be supported (checked by the
 * caller with fb__crc32c_supported; an unsupported one falls back to the
 * table so that a mistake is slow, never wrong or a SIGILL). */
uint32_t fb__crc32c_with(int impl, uint32_t crc, const void *p, size_t n);

#endif
