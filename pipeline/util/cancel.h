#pragma once
#include <atomic>

namespace petal {

// Process-wide interruption state set by SIGINT/SIGTERM. The first signal asks everything to stop
// cleanly (running stages are stopped, nothing half-done is committed); work checks `requested()`.
class Interrupt {
 public:
  static void install_handlers();  // idempotent
  static bool requested();
  static int signal_number();      // the signal that asked, 0 if none
  static void request(int signal_number);  // for tests and programmatic cancellation
  static void reset();                     // for tests
};

}  // namespace petal
