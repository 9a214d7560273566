#pragma once
// Include in LibTorch test files after the LibTorch headers and instead of <doctest/doctest.h>:
// LibTorch brings glog's CHECK macros, which would shadow doctest's.
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#include <doctest/doctest.h>
