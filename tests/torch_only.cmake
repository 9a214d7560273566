# The LibTorch test executables of a PETAL_TORCH_ONLY build (../cmake/gpu_kit.cmake): those that hold
# the CUDA test cases, run by scripts/gpu-check.sh with doctest's own filters (no CTest discovery,
# which needs doctest's CMake files). `petal` is the kit's prebuilt one, copied into the build folder.
add_executable(petal_test_worker support/test_worker_main.cpp
  ${PROJECT_SOURCE_DIR}/stages/worker/worker_protocol.cpp ${PROJECT_SOURCE_DIR}/pipeline/dag/stage_report.cpp)
target_include_directories(petal_test_worker PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(petal_test_worker PRIVATE nlohmann_json::nlohmann_json)

list(TRANSFORM PETAL_IMAGE_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/ OUTPUT_VARIABLE petal_test_image_sources)
list(REMOVE_ITEM petal_test_image_sources ${PROJECT_SOURCE_DIR}/stages/augment/augment_policy.cpp)
add_library(petal_test_image_ops STATIC ${petal_test_image_sources}
  ${PROJECT_SOURCE_DIR}/stages/evaluate/report_charts.cpp)
target_include_directories(petal_test_image_ops PUBLIC ${PROJECT_SOURCE_DIR} ${OpenCV_INCLUDE_DIRS})
target_link_libraries(petal_test_image_ops PUBLIC petal_core ${OpenCV_LIBS} nlohmann_json::nlohmann_json
  Threads::Threads PRIVATE petal_warnings)

add_executable(petal_torch_tests test_main.cpp support/test_support.cpp support/python_reference.cpp
  weights_test.cpp
  models_test.cpp
  grad_cam_test.cpp
  optim_test.cpp
  trainer_test.cpp
  weight_average_test.cpp)
target_link_libraries(petal_torch_tests PRIVATE petal_torch petal_test_image_ops petal_core doctest::doctest petal_warnings)
target_compile_definitions(petal_torch_tests PRIVATE
  PETAL_BINARY="${CMAKE_BINARY_DIR}/petal"
  PETAL_TEST_WORKER="$<TARGET_FILE:petal_test_worker>"
  PETAL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
add_dependencies(petal_torch_tests petal-worker petal_test_worker)
