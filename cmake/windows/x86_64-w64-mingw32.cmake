# Cross-building Keel for 64-bit Windows on Debian (docs/windows.md):
#   cmake -S . -B build-windows -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/windows/x86_64-w64-mingw32.cmake
# or scripts/windows.sh, which installs what is missing first. Debian's mingw-w64 GCC in its
# POSIX threads flavour (g++-mingw-w64-x86-64-posix: std::thread, std::mutex), C++20.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(KEEL_MINGW_TRIPLE x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${KEEL_MINGW_TRIPLE}-gcc-posix)
set(CMAKE_CXX_COMPILER ${KEEL_MINGW_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER ${KEEL_MINGW_TRIPLE}-windres)

# Libraries and headers come from the mingw-w64 sysroot only, never from the native /usr: a
# native header on a Windows include path compiles into something wrong, not into an error.
set(CMAKE_FIND_ROOT_PATH /usr/${KEEL_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Header-only dependencies from Debian's native packages, through shims that expose only their
# own headers (packages/<name>/, header_only.cmake). A <Package>_DIR is taken as given.
foreach(package IN ITEMS nlohmann_json Boost spdlog tomlplusplus CLI11)
  set(${package}_DIR "${CMAKE_CURRENT_LIST_DIR}/packages/${package}" CACHE PATH
    "${package} for the Windows target: Debian's headers through a shim (docs/windows.md)")
endforeach()
# Compiled dependencies built for the target from Debian's sources (scripts/windows.sh builds
# SQLite and SQLiteCpp into this prefix): searched like the sysroot.
set(KEEL_WINDOWS_DEPS "" CACHE PATH "prefix of the dependencies built for Windows from Debian's sources")
if(KEEL_WINDOWS_DEPS)
  list(APPEND CMAKE_FIND_ROOT_PATH "${KEEL_WINDOWS_DEPS}")
endif()

# Every binary links the C++ runtime, libgcc and winpthreads in: a plugin .dll or a test .exe
# then needs system DLLs only (KERNEL32, msvcrt), nothing to ship next to it.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static")

# ctest runs the Windows test programs under Wine (Debian's wine64 and wine packages).
find_program(KEEL_WINE wine)
if(KEEL_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${KEEL_WINE}")
endif()
