#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>

int main(int argc, char** argv) {
  // petal invocations made by tests never start an MLflow server unless a test asks for tracking
  // (PETAL_TRACKING=on on its command line); CTest sets the same, this covers direct runs.
  ::setenv("PETAL_TRACKING", "off", /*overwrite=*/0);
  return doctest::Context(argc, argv).run();
}
