#pragma once

namespace petal {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released), for local
// servers petal or its tests start. Another process may take it before it is used again.
int free_loopback_port();

}  // namespace petal
