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
