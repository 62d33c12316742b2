# Test helpers shared by tests/ and the standalone transport build.
#
# vkt_add_test(NAME <name> SOURCES <files...> LIBS <targets...>
#              LABELS <unit|integration|...> [TIMEOUT <s>] [ENV <VAR=VAL>...]
#              [ARGS <command-line arguments...>])
# builds one cmocka binary and registers it with ctest. Every test gets:
#   - Vulkan validation on (VKT_VALIDATE=1; any message fails the test),
#   - Mesa's shader cache inside the build tree, so pipelines compile once
#     per build and not once per test run,
#   - LeakSanitizer suppressions for driver libraries (asan build only),
#   - a hard timeout (default 120 s) so nothing can hang the suite.
find_package(PkgConfig REQUIRED)
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(VKT_TEST_ENV
  "VKT_VALIDATE=1"
  "MESA_SHADER_CACHE_DIR=${CMAKE_BINARY_DIR}/mesa-shader-cache"
  "VKT_PIPELINE_CACHE_DIR=${CMAKE_BINARY_DIR}/pipeline-cache"
  "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/../tests/lsan.supp:print_suppressions=0"
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")

function(vkt_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ENV;ARGS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} PkgConfig::CMOCKA vkt_flags)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
                       ENVIRONMENT "${VKT_TEST_ENV};${T_ENV}")
endfunction()
