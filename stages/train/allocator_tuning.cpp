#include "stages/train/allocator_tuning.h"

#include <cstdlib>  // defines __GLIBC__ where the C library is glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace petal::train {

void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  constexpr int kOneGiB = 1 << 30;
  // Blocks up to 1 GiB come from the heap, and the heap keeps up to 1 GiB free at its top. Both
  // also turn off glibc's adaptive threshold, so the behaviour does not depend on history.
  ::mallopt(M_MMAP_THRESHOLD, kOneGiB);
  ::mallopt(M_TRIM_THRESHOLD, kOneGiB);
#endif
}

}  // namespace petal::train
