# Checks a plugin shared object the way the host sees it before dlopen():
#   1. its only defined dynamic symbol is keel_plugin_entry_v1;
#   2. its .keel_manifest section holds the manifest text.
# Usage: cmake -DPLUGIN=<file.so> -DNM=<nm> -DREADELF=<readelf> -DEXPECT=<text in manifest>
#              -P check_plugin_exports.cmake
foreach(var PLUGIN NM READELF EXPECT)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check_plugin_exports: -D${var}=... is required")
  endif()
endforeach()

execute_process(COMMAND "${NM}" -D --defined-only "${PLUGIN}"
                OUTPUT_VARIABLE symbols ERROR_VARIABLE nm_error RESULT_VARIABLE nm_rc)
if(NOT nm_rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${PLUGIN}: ${nm_error}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${symbols}")
set(names "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^.*[ \t]" "" name "${line}")
  list(APPEND names "${name}")
endforeach()
if(NOT names STREQUAL "keel_plugin_entry_v1")
  message(FATAL_ERROR "${PLUGIN} must export exactly keel_plugin_entry_v1, but exports: ${names}")
endif()

execute_process(COMMAND "${READELF}" --string-dump=.keel_manifest "${PLUGIN}"
                OUTPUT_VARIABLE manifest ERROR_VARIABLE readelf_error RESULT_VARIABLE readelf_rc)
if(NOT readelf_rc EQUAL 0 OR readelf_error MATCHES "not present|not exist|Warning")
  message(FATAL_ERROR "${PLUGIN} has no readable .keel_manifest section: ${readelf_error}")
endif()
string(FIND "${manifest}" "${EXPECT}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "the .keel_manifest section of ${PLUGIN} lacks '${EXPECT}':\n${manifest}")
endif()
message(STATUS "${PLUGIN}: exports only keel_plugin_entry_v1; manifest section present")
