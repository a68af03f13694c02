#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

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

Test(crc32, matches_zlib_on_random_data_and_chunking)
{
    uint8_t buf[4099];

    srand(7);
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)rand();
    }
    for (size_t len = 0; len < sizeof(buf); len += 37) {
        uint32_t want = (uint32_t)crc32(0, buf, (uInt)len);
        size_t cut = len / 3;
        uint32_t got = rmq_crc32_update(rmq_crc32_update(0, buf, cut), buf + cut, len - cut);

        cr_assert_eq(rmq_crc32_update(0, buf, len), want, "len %zu", len);
        cr_assert_eq(got, want, "chunked len %zu", len);
    }
}
