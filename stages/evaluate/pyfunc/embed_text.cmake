# Writes OUTPUT, a C++ source whose function `std::string_view NAMESPACE::FUNCTION()` returns the
# text of INPUT, held in a raw string literal; HEADER is the header declaring that function, NAME
# how the generated file refers to INPUT (relative, so no absolute source path ends up in petal).
# Run at build time by the custom command in CMakeLists.txt:
#   cmake -DINPUT=... -DOUTPUT=... -DNAME=... -DHEADER=... -DNAMESPACE=... -DFUNCTION=... -P embed_text.cmake
foreach(required INPUT OUTPUT NAME HEADER NAMESPACE FUNCTION)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "embed_text.cmake: -D${required}=... is required")
  endif()
endforeach()

file(READ "${INPUT}" text)
set(delimiter "petal_embedded")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${NAME} contains ')${delimiter}\"', which would end the raw string literal embedding it")
endif()

# Written through a temp file and copied only when different, so an unchanged text does not
# recompile anything.
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${NAME} by embed_text.cmake at build time; edit that file, not this one.\n"
  "#include \"${HEADER}\"\n"
  "\n"
  "namespace ${NAMESPACE} {\n"
  "\n"
  "std::string_view ${FUNCTION}() {\n"
  "  static constexpr std::string_view text = R\"${delimiter}(${text})${delimiter}\";\n"
  "  return text;\n"
  "}\n"
  "\n"
  "}  // namespace ${NAMESPACE}\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUTPUT}.tmp" "${OUTPUT}")
file(REMOVE "${OUTPUT}.tmp")
