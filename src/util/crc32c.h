/*
 * crc32c - CRC-32C (Castagnoli), the checksum of every record and header on
 * disk. Uses the SSE4.2 instruction when the CPU has it, a table otherwise;
 * both give the same values (crc32c("123456789") = 0xe3069283).
 */
#ifndef FB_UTIL_CRC32C_H
#define FB_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) with n bytes of p. */
uint32_t fb__crc32c(uint32_t crc, const void *p, size_t n);

#endif
