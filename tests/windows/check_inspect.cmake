# A Linux keel reads a Windows plugin: `keel plugin inspect --json <file.dll>` names the format
# and the manifest's name, and refuses to load it here with the reason (docs/windows.md).
# Usage: cmake -DKEEL=<native keel> -DPLUGIN=<file.dll> -DNAME=<manifest name> -P check_inspect.cmake
cmake_minimum_required(VERSION 3.25)
foreach(var KEEL PLUGIN NAME)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check_inspect: -D${var}=... is required")
  endif()
endforeach()
execute_process(COMMAND "${KEEL}" plugin inspect --json "${PLUGIN}"
                OUTPUT_VARIABLE json ERROR_VARIABLE stderr RESULT_VARIABLE rc)
string(JSON format ERROR_VARIABLE json_error GET "${json}" format)
if(json_error)
  message(FATAL_ERROR "keel plugin inspect --json ${PLUGIN} printed no JSON with a format (${json_error}):\n${json}${stderr}")
endif()
string(JSON name GET "${json}" manifest name)
string(JSON error GET "${json}" error)
if(NOT format STREQUAL "PE32+ DLL (.dll)" OR NOT name STREQUAL NAME)
  message(FATAL_ERROR "${PLUGIN}: format '${format}', name '${name}'; expected a PE32+ DLL named ${NAME}")
endif()
if(NOT rc EQUAL 1 OR NOT error MATCHES "this host loads ELF shared object")
  message(FATAL_ERROR "${PLUGIN}: a Linux keel must refuse to load a DLL (exit 1), got exit ${rc}: ${error}")
endif()
message(STATUS "${PLUGIN}: ${format}, name ${name}; refused here: ${error}")
