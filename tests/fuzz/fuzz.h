/* fuzz.h - the libFuzzer entry point every fuzz_*.c defines. */
#ifndef METASTORE_FUZZ_H
#define METASTORE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
