// CTest fixture for tests that talk to a real MLflow server:
//   petal_mlflow_fixture start DIR   starts (or reuses) a server with its state in DIR
//   petal_mlflow_fixture stop DIR    stops it and removes DIR
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "pipeline/util/error.h"
#include "tracking/local_server.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: petal_mlflow_fixture start|stop DIR\n");
    return 2;
  }
  petal::LocalMlflowServer server(argv[2]);
  try {
    if (std::strcmp(argv[1], "start") == 0) {
      std::printf("MLflow test server at %s\n", server.ensure_running().c_str());
      return 0;
    }
    server.stop();
    std::error_code ec;
    std::filesystem::remove_all(argv[2], ec);
    return 0;
  } catch (const petal::PetalError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
