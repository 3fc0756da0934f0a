# Checks a plugin .dll the way check_plugin.cmake checks a .so, without loading it: its export
# table names exactly keel_plugin_entry_v1, and it imports system DLLs only (no C++ runtime,
# libgcc or winpthreads DLL, and nothing of the host: a plugin never links against keel.exe).
# Usage: cmake -DPLUGIN=<file.dll> -DOBJDUMP=<x86_64-w64-mingw32-objdump> -P check_dll.cmake
cmake_minimum_required(VERSION 3.25)
foreach(var PLUGIN OBJDUMP)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check_dll: -D${var}=... is required")
  endif()
endforeach()
# The DLLs every Windows since 7 has in System32 that a mingw-w64 build may import.
set(system_dlls KERNEL32.dll msvcrt.dll ADVAPI32.dll USER32.dll WS2_32.dll)

execute_process(COMMAND "${OBJDUMP}" -p "${PLUGIN}"
                OUTPUT_VARIABLE dump ERROR_VARIABLE objdump_error RESULT_VARIABLE objdump_rc)
if(NOT objdump_rc EQUAL 0)
  message(FATAL_ERROR "objdump failed on ${PLUGIN}: ${objdump_error}")
endif()

# Export names: the lines after "[Ordinal/Name Pointer] Table", "\t[   0] name".
string(FIND "${dump}" "[Ordinal/Name Pointer] Table" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${PLUGIN} has no export name table: it must export keel_plugin_entry_v1")
endif()
string(SUBSTRING "${dump}" ${at} -1 table)
string(FIND "${table}" "\n\n" end)
string(SUBSTRING "${table}" 0 ${end} table)
string(REGEX MATCHALL "\n\t\\[ *[0-9]+\\] [^\n]+" entries "${table}")
set(exports "")
foreach(entry IN LISTS entries)
  string(REGEX REPLACE "^\n\t\\[ *[0-9]+\\] " "" name "${entry}")
  list(APPEND exports "${name}")
endforeach()
if(NOT "${exports}" STREQUAL "keel_plugin_entry_v1")
  message(FATAL_ERROR "${PLUGIN} must export exactly 'keel_plugin_entry_v1', but exports '${exports}'")
endif()

string(REGEX MATCHALL "DLL Name: [^\n]+" imports "${dump}")
set(names "")
foreach(import IN LISTS imports)
  string(REPLACE "DLL Name: " "" name "${import}")
  list(APPEND names "${name}")
  if(NOT name IN_LIST system_dlls)
    message(FATAL_ERROR "${PLUGIN} imports ${name}; a plugin may import system DLLs only (${system_dlls})")
  endif()
endforeach()
message(STATUS "${PLUGIN}: exports keel_plugin_entry_v1 only; imports ${names}")
