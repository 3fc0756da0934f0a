# The SDK cross-built for Windows, used the way a plugin team uses it: install the development
# package from the Windows build, build examples/out-of-tree/cpp_plugin against it alone with the
# same toolchain file, check the .dll's exports and imports, and load it under Wine.
# Usage: cmake -DBUILD_DIR=<build-windows> -DSOURCE_DIR=<keel tree> -DTOOLCHAIN=<file> -DWORK=<dir>
#              -DEMULATOR=<wine> -DTEST_EXE=<keel_windows_plugin_test.exe> -DOBJDUMP=<objdump>
#              -P out_of_tree.cmake
cmake_minimum_required(VERSION 3.25)
foreach(var BUILD_DIR SOURCE_DIR TOOLCHAIN WORK EMULATOR TEST_EXE OBJDUMP)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "out_of_tree: -D${var}=... is required")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " command "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${command}\n${out}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK}")
run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --component keel_dev --prefix "${WORK}/sdk")
# Keel_DIR rather than CMAKE_PREFIX_PATH: the toolchain file confines package searches to the
# mingw-w64 sysroot, and a <Package>_DIR is taken as given.
run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}/examples/out-of-tree/cpp_plugin" -B "${WORK}/build" -G Ninja
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN}" "-DKeel_DIR=${WORK}/sdk/lib/cmake/Keel")
run("${CMAKE_COMMAND}" --build "${WORK}/build")
set(dll "${WORK}/build/plugins/cpp_plugin.dll")
if(NOT EXISTS "${dll}")
  message(FATAL_ERROR "keel_add_plugin(cpp_plugin) built no ${dll}")
endif()
run("${CMAKE_COMMAND}" "-DPLUGIN=${dll}" "-DOBJDUMP=${OBJDUMP}" -P "${CMAKE_CURRENT_LIST_DIR}/check_dll.cmake")
run("${EMULATOR}" "${TEST_EXE}" "${dll}")
message(STATUS "${dll}: built out of tree against the Windows SDK, loads under Wine")
