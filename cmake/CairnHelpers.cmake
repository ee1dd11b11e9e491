# cairn_library(NAME SRCS ... DEPS ... [PRIVATE_DEPS ...])
# One library per folder; public headers are included as "folder/header.h" from the repo root.
set(CAIRN_WARNINGS -Wall -Wextra -Werror -Wno-unused-parameter)

function(cairn_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SRCS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_options(${name} PRIVATE ${CAIRN_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

function(cairn_executable name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${CAIRN_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

# cairn_test(NAME SRCS ... DEPS ...): a GoogleTest binary registered with CTest.
# A test that calls GTEST_SKIP() (gtest prints "[  SKIPPED ]" for it) is
# reported by CTest as skipped, not passed. Skips for a dependency the run
# lacks say "missing dependency: ..." (scripts/test.sh fails them under CI).
# PROPERTIES ... are added to every discovered test's properties.
function(cairn_test name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;LABELS;PROPERTIES" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${CAIRN_WARNINGS})
  target_compile_definitions(${name} PRIVATE
    CAIRN_SHARED_DIR="${CAIRN_SHARED_DIR}"
    CAIRN_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} cairn_testing GTest::gtest GTest::gtest_main)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}"
    SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]" ${ARG_PROPERTIES})
endfunction()
