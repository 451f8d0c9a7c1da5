/* poison.h - AddressSanitizer's manual poisoning for the allocators of util (arena.c,
 * mcache.c): memory they hold but have not handed out is reported like freed memory. No-ops
 * without AddressSanitizer. */
#ifndef METASTORE_UTIL_POISON_H
#define METASTORE_UTIL_POISON_H

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MS_UTIL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define MS_UTIL_ASAN 1
#endif
#ifdef MS_UTIL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#endif
