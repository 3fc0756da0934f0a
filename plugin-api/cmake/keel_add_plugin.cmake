# keel_add_plugin(): builds a Keel plugin the way the host expects it (docs/plugin-guide.md).
#
#   keel_add_plugin(<name>
#                   [ENTRY <file>]              # the ABI-facing file; default plugin.cpp (plugin.c for C)
#                   [SOURCES <files...>]        # plain plugin logic, built as a unit-testable library
#                   [LANGUAGE C|CXX]            # default: C when ENTRY ends in .c, else CXX
#                   [MANIFEST <file.json>]      # the manifest as a JSON file, checked at build time
#                   [OUTPUT_DIRECTORY <dir>])   # default: ${CMAKE_BINARY_DIR}/plugins
#
# Creates
#   keel_plugin_<name>_core  STATIC, position-independent, the SOURCES (only when SOURCES are given);
#                            link it into your unit tests and drive the plugin class with FakeHost.
#   keel_plugin_<name>       MODULE <name>.so (no "lib" prefix; <name>.dll for Windows, built with
#                            mingw-w64: docs/windows.md), the ENTRY plus the core library,
#                            hidden visibility, linked with --no-undefined (a plugin never links
#                            against the host) and a version script that exports only
#                            keel_plugin_entry_v1. Hidden visibility alone is not enough: namespace
#                            std keeps default visibility, so libstdc++ templates that clang emits
#                            out of line at -O0, and STB_GNU_UNIQUE objects (behind std::to_string
#                            or std::make_shared), would be exported too.
# With MANIFEST, the build runs keel-manifest on the file before compiling: it fails, naming the
# file and each JSON path (e.g. "manifest.json: error: routes[1].method: ..."), on anything the
# host would refuse at load time, and when the manifest's "name" is not <name>. Otherwise it
# generates keel_manifest.h, on the (private) include path of the module and the core library, defining
# KEEL_MANIFEST_JSON as the file's text: KEEL_PLUGIN_MANIFEST(KEEL_MANIFEST_JSON) in C,
# KEEL_PLUGIN(Class, KEEL_MANIFEST_JSON) in C++. Editing the file rebuilds the plugin.
# C++ plugins link keel::plugin_sdk (C++20, header-only), C plugins keel::plugin_api (C11).
# The module installs to ${CMAKE_INSTALL_LIBDIR}/keel/plugins (component keel_plugins).
#
# C++ is compiled as ISO C++20 (no GNU extensions), C as ISO C11. With no CMAKE_BUILD_TYPE the
# plugin is still optimised (-O2). Inside the Keel repository the targets also get
# keel_set_warnings() and the keel_sanitizers flags, so in-tree plugins are warning-clean and
# instrumented like the host. Out of tree (find_package(Keel)) they get -Wall -Wextra -Wshadow
# -Wconversion -Wformat=2 instead (option KEEL_PLUGIN_WARNINGS, ON by default).

include_guard(GLOBAL)
include(GNUInstallDirs)
option(KEEL_PLUGIN_WARNINGS "out of tree: build plugins with -Wall -Wextra -Wshadow -Wconversion -Wformat=2" ON)

function(keel_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "ENTRY;LANGUAGE;OUTPUT_DIRECTORY;MANIFEST" "SOURCES")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "keel_add_plugin(${name}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  # The manifest name rule (docs/abi.md section 7.2); the file name and the target follow it.
  if(NOT name MATCHES "^[a-z][a-z0-9_]*$")
    message(FATAL_ERROR "keel_add_plugin(${name}): the name must match [a-z][a-z0-9_]*")
  endif()

  set(lang "${ARG_LANGUAGE}")
  if(lang STREQUAL "" AND ARG_ENTRY MATCHES "\\.c$")
    set(lang C)
  elseif(lang STREQUAL "")
    set(lang CXX)
  endif()
  if(NOT lang MATCHES "^(C|CXX)$")
    message(FATAL_ERROR "keel_add_plugin(${name}): LANGUAGE must be C or CXX, not '${lang}'")
  endif()
  get_property(enabled_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if(NOT lang IN_LIST enabled_languages)
    message(FATAL_ERROR "keel_add_plugin(${name}): language ${lang} is not enabled; add it to project()")
  endif()

  set(entry "${ARG_ENTRY}")
  if(entry STREQUAL "")
    if(lang STREQUAL "C")
      set(entry plugin.c)
    else()
      set(entry plugin.cpp)
    endif()
  endif()

  if(lang STREQUAL "C")
    set(api keel::plugin_api)
  else()
    set(api keel::plugin_sdk)
  endif()

  set(output_dir "${ARG_OUTPUT_DIRECTORY}")
  if(output_dir STREQUAL "")
    set(output_dir "${CMAKE_BINARY_DIR}/plugins")
  endif()

  set(module keel_plugin_${name})
  add_library(${module} MODULE ${entry})
  set_target_properties(${module} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${name}
    # A generator expression stops multi-config generators from appending /<Config>.
    LIBRARY_OUTPUT_DIRECTORY "$<1:${output_dir}>")
  target_link_libraries(${module} PRIVATE ${api})
  _keel_plugin_settings(${module} ${lang})

  _keel_plugin_link_settings(${module} ${lang})

  set(core "")
  if(ARG_SOURCES)
    set(core keel_plugin_${name}_core)
    add_library(${core} STATIC ${ARG_SOURCES})
    set_target_properties(${core} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_link_libraries(${core} PUBLIC ${api})
    _keel_plugin_settings(${core} ${lang})
    target_link_libraries(${module} PRIVATE ${core})
  endif()

  if(ARG_MANIFEST)
    _keel_plugin_manifest(${name} "${ARG_MANIFEST}" ${module} ${core})
  endif()

  install(TARGETS ${module}
    LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}/keel/plugins" COMPONENT keel_plugins)
endfunction()

# MANIFEST <file>: check the file and generate keel_manifest.h for `targets` (docs/plugin-guide.md).
function(_keel_plugin_manifest name file)
  get_filename_component(manifest "${file}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${manifest}")
    message(FATAL_ERROR "keel_add_plugin(${name}): MANIFEST ${file} does not exist (looked for ${manifest})")
  endif()
  # In the Keel tree the tool is built first (a target-level dependency); installed, it is a file.
  if(TARGET keel_manifest_tool)
    set(tool keel_manifest_tool)
  else()
    set(tool "$<TARGET_FILE:keel::manifest_tool>")
  endif()
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/keel_manifest/${name}")
  set(header "${dir}/keel_manifest.h")
  add_custom_command(OUTPUT "${header}"
    COMMAND "$<TARGET_FILE:keel::manifest_tool>" embed "${manifest}" "${header}" "${name}"
    DEPENDS "${manifest}" ${tool}
    COMMENT "Checking the manifest of ${name} (${file})"
    VERBATIM)
  add_custom_target(keel_plugin_${name}_manifest DEPENDS "${header}")
  foreach(target IN LISTS ARGN)
    add_dependencies(${target} keel_plugin_${name}_manifest)
    target_include_directories(${target} PRIVATE "${dir}")
  endforeach()
endfunction()

# Link settings of a plugin module: exports and undefined symbols. Also used for the test fixtures.
function(_keel_plugin_link_settings module lang)
  if(WIN32)
    # A PE DLL (docs/windows.md). Once one symbol is __declspec(dllexport) (KEEL_EXPORT on
    # keel_plugin_entry_v1) GNU ld and lld export only those; --exclude-all-symbols says so
    # outright. -static links the C++ runtime, libgcc and winpthreads in: the DLL needs system
    # DLLs only, never the host or a runtime DLL next to it. PE has no undefined symbols to allow.
    if(NOT MINGW)
      message(FATAL_ERROR "keel_add_plugin(${module}): Windows plugins are built with mingw-w64 (GCC or clang); "
        "KEEL_PLUGIN_MANIFEST places the manifest in a PE section with their attributes (docs/windows.md)")
    endif()
    target_link_options(${module} PRIVATE LINKER:--exclude-all-symbols -static)
    return()
  endif()
  set(map "${CMAKE_BINARY_DIR}/keel_plugin_exports.map")
  file(CONFIGURE OUTPUT "${map}" CONTENT "{\n  global: keel_plugin_entry_v1;\n  local: *;\n};\n")
  target_link_options(${module} PRIVATE "LINKER:--version-script=${map}")
  set_property(TARGET ${module} APPEND PROPERTY LINK_DEPENDS "${map}")
  # clang + ASan/UBSan: the sanitizer runtime is resolved from the host executable at load time,
  # so --no-undefined cannot hold (TOOLCHAIN.md pitfall 8). g++ links its runtime into the module.
  if(NOT (CMAKE_${lang}_COMPILER_ID STREQUAL "Clang" AND KEEL_SANITIZE))
    target_link_options(${module} PRIVATE LINKER:--no-undefined)
  endif()
endfunction()

# Compile settings shared by the module and its core library.
function(_keel_plugin_settings target lang)
  set_target_properties(${target} PROPERTIES
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(lang STREQUAL "C")
    # keel/plugin.h is C11; plugins are held to strict ISO C11 (define _POSIX_C_SOURCE for POSIX).
    set_target_properties(${target} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  else()
    # The SDK is ISO C++20; plugins are held to it too (-std=c++20, not gnu++20), like C to C11.
    set_target_properties(${target} PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
  endif()
  # A build with no build type (CMake's default for a single-config generator) adds no -O at
  # all: a plugin built that way would be several times slower than it should. Optimise it
  # unless a build type says otherwise (Debug stays -O0).
  target_compile_options(${target} PRIVATE "$<$<CONFIG:>:-O2>")
  if(MINGW)
    # mingw-w64 declares the POSIX thread-safe time functions (gmtime_r, localtime_r) only on
    # request: plugin code written on Linux compiles for Windows unchanged.
    target_compile_definitions(${target} PRIVATE _POSIX_THREAD_SAFE_FUNCTIONS)
  endif()
  if(TARGET keel_sanitizers)
    target_link_libraries(${target} PRIVATE keel_sanitizers)
  endif()
  if(COMMAND keel_set_warnings)
    keel_set_warnings(${target})
  elseif(KEEL_PLUGIN_WARNINGS AND CMAKE_${lang}_COMPILER_ID MATCHES "GNU|Clang")
    # Out of tree: the warnings that catch real bugs; -DKEEL_PLUGIN_WARNINGS=OFF turns them off.
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wconversion -Wformat=2)
  endif()
endfunction()
