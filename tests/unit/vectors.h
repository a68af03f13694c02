/* Golden vectors from ../shared/spec/vectors (override the folder with RMQ_SPEC_DIR). */
#ifndef RMQ_TESTS_VECTORS_H
#define RMQ_TESTS_VECTORS_H

#include <stddef.h>
#include <stdint.h>

/* Hex file → bytes (whitespace ignored). 0, or -errno; *out is malloc'd. */
int rmq_test_load_hex(const char *name, uint8_t **out, size_t *len);
/* Raw file → bytes, NUL-terminated (len excludes the NUL). */
int rmq_test_load_raw(const char *name, uint8_t **out, size_t *len);
/* Names of every *.hex vector whose name starts with prefix; NULL-terminated, malloc'd. */
char **rmq_test_list_vectors(const char *prefix, size_t *count);
void rmq_test_free_list(char **names, size_t count);

#endif
