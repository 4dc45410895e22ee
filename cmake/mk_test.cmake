# What a gpu test prints when it skips because its backend cannot run here
# (tests/support/engine_test_util.h, MK_REQUIRE_BACKEND). ctest reports a gpu test skipped only
# on this line, never on a gtest SKIPPED of another cause, which must not hide a failure.
set(MK_GPU_SKIP_REGEX "backend unavailable here: ")

# Every binary a test labelled unit or integration runs (preset asan, deploy/test.sh builds only
# these under AddressSanitizer + UBSan); tests/integration adds the binaries its scripts launch.
add_custom_target(mk_unit_integration_tests)

# mk_add_test(NAME <name> SOURCES <files...> LIBS <targets...> LABELS <labels...> [TIMEOUT s])
# The one helper that registers every test binary with ctest and its labels
# (unit, integration, gpu, uring, fuzz, perf).
function(mk_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} mk::test_support GTest::gtest GTest::gmock
                        GTest::gtest_main)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
  # GPU tests skip (reported as skipped by ctest) where no device is present.
  if("gpu" IN_LIST T_LABELS)
    set_tests_properties(${T_NAME} PROPERTIES SKIP_REGULAR_EXPRESSION "${MK_GPU_SKIP_REGEX}")
  endif()
  # Tests labelled `concurrency` also run under ThreadSanitizer (preset tsan, deploy/test.sh).
  if("concurrency" IN_LIST T_LABELS)
    add_dependencies(mk_concurrency_tests ${T_NAME})
  endif()
  if("unit" IN_LIST T_LABELS OR "integration" IN_LIST T_LABELS)
    add_dependencies(mk_unit_integration_tests ${T_NAME})
  endif()
endfunction()

# mk_add_bench(NAME <name> SOURCES <files...> LIBS <targets...>): a benchmark binary with the
# `perf` label; not part of the default test run (ctest -LE perf).
function(mk_add_bench)
  cmake_parse_arguments(B "" "NAME" "SOURCES;LIBS" ${ARGN})
  add_executable(${B_NAME} ${B_SOURCES})
  target_link_libraries(${B_NAME} PRIVATE ${B_LIBS} mk::test_support)
  add_test(NAME ${B_NAME} COMMAND ${B_NAME})
  set_tests_properties(${B_NAME} PROPERTIES LABELS "perf" TIMEOUT 600
                       ENVIRONMENT "MK_BENCH_QUICK=1")
endfunction()

# mk_add_engine_suite(NAME <binary> SOURCES <files...> LIBS <targets...>
#                     BACKENDS <backend>... [CONCURRENCY <backend>...] [LABELS <labels...>])
# One binary of the black-box engine suite, registered once per backend as
# <binary>_<backend> ('-' becomes '_') with MK_TEST_ENGINE=<backend>. The cuda run is labelled
# gpu and skips without a device; the others get LABELS, and `concurrency` too for the backends
# listed under CONCURRENCY (they run again under ThreadSanitizer).
function(mk_add_engine_suite)
  cmake_parse_arguments(S "" "NAME" "SOURCES;LIBS;LABELS;BACKENDS;CONCURRENCY" ${ARGN})
  add_executable(${S_NAME} ${S_SOURCES})
  target_link_libraries(${S_NAME} PRIVATE ${S_LIBS} mk::test_support GTest::gtest GTest::gmock
                        GTest::gtest_main)
  foreach(backend ${S_BACKENDS})
    string(REPLACE "-" "_" suffix ${backend})
    set(test ${S_NAME}_${suffix})
    add_test(NAME ${test} COMMAND ${S_NAME})
    set(labels ${S_LABELS})
    if(backend STREQUAL "cuda")
      set(labels gpu)
      set_tests_properties(${test} PROPERTIES SKIP_REGULAR_EXPRESSION "${MK_GPU_SKIP_REGEX}")
    elseif(backend IN_LIST S_CONCURRENCY)
      list(APPEND labels concurrency)
      add_dependencies(mk_concurrency_tests ${S_NAME})
    endif()
    set_tests_properties(${test} PROPERTIES LABELS "${labels}" TIMEOUT 600
                         ENVIRONMENT "MK_TEST_ENGINE=${backend}")
    if("unit" IN_LIST labels OR "integration" IN_LIST labels)
      add_dependencies(mk_unit_integration_tests ${S_NAME})
    endif()
  endforeach()
endfunction()
