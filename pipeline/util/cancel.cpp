#include "pipeline/util/cancel.h"

#include <signal.h>

namespace petal {

namespace {
std::atomic<int> g_signal{0};

extern "C" void on_signal(int number) { g_signal.store(number); }
}  // namespace

void Interrupt::install_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: blocking waits return EINTR and look at the flag
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);
}

bool Interrupt::requested() { return g_signal.load() != 0; }
int Interrupt::signal_number() { return g_signal.load(); }
void Interrupt::request(int number) { g_signal.store(number); }
void Interrupt::reset() { g_signal.store(0); }

}  // namespace petal
