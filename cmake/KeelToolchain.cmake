# Build-wide conventions: ccache, sanitizers and the keel_set_warnings() helper.
# Flags are attached per target; nothing here touches CMAKE_CXX_FLAGS.

find_program(KEEL_CCACHE ccache)
if(KEEL_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER "${KEEL_CCACHE}")
  set(CMAKE_CXX_COMPILER_LAUNCHER "${KEEL_CCACHE}")
endif()

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

# One interface target carries the sanitizer flags so host, plugins and tests agree.
add_library(keel_sanitizers INTERFACE)
if(KEEL_SANITIZE)
  # -fno-sanitize=vptr: on a type-cache miss the vptr check probes memory through a pipe(2);
  # when the host is out of file descriptors (a case the tests provoke on purpose) the probe
  # fails and UBSan reports every virtual call as "invalid vptr".
  set(_keel_san -fsanitize=${KEEL_SANITIZE} -fno-sanitize=vptr -fno-omit-frame-pointer -fno-sanitize-recover=all)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang 14: -fsanitize=function breaks C++20 coroutines (TOOLCHAIN.md pitfall 8).
    list(APPEND _keel_san -fno-sanitize=function)
  endif()
  target_compile_options(keel_sanitizers INTERFACE ${_keel_san})
  target_link_options(keel_sanitizers INTERFACE ${_keel_san})
endif()

function(keel_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual -Wconversion -Wformat=2 -Wimplicit-fallthrough>
    $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wformat=2>)
  # g++ 12 false positives when optimising: -Wrestrict on std::string concatenation (GCC PR 105329),
  # and -Wmismatched-new-delete on Asio's coroutine frames, whose operator new/delete pair up
  # through Asio's recycling allocator (aligned_alloc + free) in a way g++ cannot see.
  target_compile_options(${target} PRIVATE
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-restrict -Wno-mismatched-new-delete>)
  if(KEEL_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
