# Dependencies of a PETAL_TORCH_ONLY build, taken from the kit that scripts/gpu-kit.sh prepares
# (unpacked by scripts/gpu-check.sh into the build folder's kit/): OpenCV (core, imgproc, imgcodecs; static,
# with libjpeg, libpng and zlib), OpenSSL's libcrypto and headers, nlohmann_json, toml++ (header-only
# here) and doctest. Nothing is looked up in the system but a compiler, Threads and LibTorch.
set(PETAL_KIT_ROOT "${CMAKE_BINARY_DIR}/kit" CACHE PATH "The unpacked kit (scripts/gpu-kit.sh)")
if(NOT EXISTS "${PETAL_KIT_ROOT}/kit.json")
  message(FATAL_ERROR "PETAL_TORCH_ONLY: no kit at ${PETAL_KIT_ROOT} (run scripts/gpu-kit.sh, then unpack "
                      ".gpu-kit/kit.tar.xz there, as scripts/gpu-check.sh does, or set PETAL_KIT_ROOT)")
endif()
message(STATUS "PETAL_TORCH_ONLY: dependencies from the kit at ${PETAL_KIT_ROOT}")
set(kit_include "${PETAL_KIT_ROOT}/include")
set(kit_lib "${PETAL_KIT_ROOT}/lib")

add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
set_target_properties(nlohmann_json::nlohmann_json PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kit_include}")

add_library(tomlplusplus::tomlplusplus INTERFACE IMPORTED)
set_target_properties(tomlplusplus::tomlplusplus PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kit_include}"
  INTERFACE_COMPILE_DEFINITIONS "TOML_HEADER_ONLY=1")

add_library(doctest::doctest INTERFACE IMPORTED)
set_target_properties(doctest::doctest PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kit_include}")

add_library(OpenSSL::Crypto SHARED IMPORTED)
set_target_properties(OpenSSL::Crypto PROPERTIES IMPORTED_LOCATION "${kit_lib}/libcrypto.so.3"
  INTERFACE_INCLUDE_DIRECTORIES "${kit_include}")

# OpenCV's static libraries, in link order, then the codecs' libraries they need.
add_library(petal_kit_opencv INTERFACE)
target_link_libraries(petal_kit_opencv INTERFACE
  "${kit_lib}/libopencv_imgcodecs.a" "${kit_lib}/libopencv_imgproc.a" "${kit_lib}/libopencv_core.a"
  "${kit_lib}/libjpeg.a" "${kit_lib}/libpng16.a" "${kit_lib}/libz.a" ${CMAKE_DL_LIBS} Threads::Threads)
set(OpenCV_INCLUDE_DIRS "${kit_include}/opencv4")
set(OpenCV_LIBS petal_kit_opencv)

# The kit's prebuilt petal and petal-data-worker, copied beside petal-worker so that petal finds its
# workers there (worker_executable); their RPATH finds the kit's libraries through kit-lib.
file(COPY "${PETAL_KIT_ROOT}/bin/petal" "${PETAL_KIT_ROOT}/bin/petal-data-worker" DESTINATION "${CMAKE_BINARY_DIR}")
file(CREATE_LINK "${kit_lib}" "${CMAKE_BINARY_DIR}/kit-lib" SYMBOLIC)
