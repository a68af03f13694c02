#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32.h"

Test(crc32, spec_example_hello_rocketmq)
{
    const char *s = "Hello RocketMQ";

    /* spec/STORE.md §6: BODYCRC of "Hello RocketMQ" is 1774740973 */
    cr_assert_eq(rmq_crc32_masked(s, strlen(s)), 1774740973u);
}

Test(crc32, empty_is_zero)
{
    cr_assert_eq(rmq_crc32_masked("", 0), 0u);
}

Test(crc32, check_value)
{
    cr_assert_eq(rmq_crc32_update(0, "123456789", 9), 0xCBF43926u);
}

Test(crc32, chunked_updates_equal_one_pass)
{
    uint8_t buf[4099];

    srand(7);
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)rand();
    }
    for (size_t len = 0; len < sizeof(buf); len += 37) {
        size_t cut = len / 3;
        uint32_t whole = rmq_crc32_update(0, buf, len);
        uint32_t parts = rmq_crc32_update(rmq_crc32_update(0, buf, cut), buf + cut, len - cut);

        cr_assert_eq(parts, whole, "len %zu", len);
    }
}

Test(crc32, known_values)
{
    /* well-known CRC-32 values: "a", "abc", 32 zero bytes, "The quick brown fox..." */
    static const uint8_t zeros[32];
    const char *fox = "The quick brown fox jumps over the lazy dog";

    cr_assert_eq(rmq_crc32_update(0, "a", 1), 0xE8B7BE43u);
    cr_assert_eq(rmq_crc32_update(0, "abc", 3), 0x352441C2u);
    cr_assert_eq(rmq_crc32_update(0, zeros, sizeof(zeros)), 0x190A55ADu);
    cr_assert_eq(rmq_crc32_update(0, fox, strlen(fox)), 0x414FA339u);
}

/* x^e mod P (P = 0x104C11DB7), bit-reflected over 32 bits, shifted left by one: the
 * folding multipliers core/crc32.c hard-codes, computed here from the polynomial. */
static uint64_t
fold_constant(unsigned e)
{
    uint64_t r = 1;
    uint64_t out = 0;

    for (unsigned i = 0; i < e; i++) {
        r <<= 1;
        if (r & 0x100000000ull) {
            r ^= 0x104C11DB7ull;
        }
    }
    for (int b = 0; b < 32; b++) {
        out |= ((r >> b) & 1) << (31 - b);
    }
    return out << 1;
}

Test(crc32, folding_constants_come_from_the_polynomial)
{
    cr_assert_eq(fold_constant(2048 + 32), 0x11542778aull);
    cr_assert_eq(fold_constant(2048 - 32), 0x1322d1430ull);
    cr_assert_eq(fold_constant(512 + 32), 0x154442bd4ull);
    cr_assert_eq(fold_constant(512 - 32), 0x1c6e41596ull);
}

/* Bit at a time, straight from the definition: the reference for the folded path. */
static uint32_t
crc32_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
        }
    }
    return ~crc;
}

Test(crc32, every_length_offset_and_start_value_agrees_with_the_definition)
{
    static uint8_t buf[4200 + 64];
    uint32_t seed = 12345;

    for (size_t i = 0; i < sizeof(buf); i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
    /* every length to 1100 (each fold count and tail), then steps to 4200; the 512-bit
     * path takes lengths from 256 on where the CPU has it */
    for (size_t len = 0; len <= 4200; len += len < 1100 ? 1 : 61) {
        size_t off = len % 64;
        uint32_t start = len % 3 == 0 ? 0 : (uint32_t)len * 2654435761u;

        cr_assert_eq(rmq_crc32_update(start, buf + off, len),
                     crc32_bitwise(start, buf + off, len),
                     "len %zu offset %zu start %08x (512-bit folding %s)", len, off, start,
                     rmq_crc32_folds_512() ? "on" : "off");
    }
}
