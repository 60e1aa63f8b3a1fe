/* Force-included into every file of an ASan build (scripts/sanitize).
 *
 * LLVM's allocators poison and unpoison their slabs in inline header code
 * when the including file is built with ASan. Debian's libLLVM and libMLIR
 * are not, so memory poisoned by one of our inlined copies is later handed
 * out by theirs without being unpoisoned, and ASan reports a false
 * use-after-poison. Here the two hooks do nothing; ASan still checks every
 * access against its own heap, stack and global redzones. */
#include <sanitizer/asan_interface.h>
#define __asan_poison_memory_region(addr, size) ((void)(addr), (void)(size))
#define __asan_unpoison_memory_region(addr, size) ((void)(addr), (void)(size))
