# nlohmann_json for a Windows cross-build (x86_64-w64-mingw32.cmake points find_package here).
# The library is header-only: Debian's nlohmann-json3-dev headers are exposed through a
# directory that holds nothing but a link to /usr/include/nlohmann, so no other native header
# lands on the target's include path. Gives nlohmann_json::nlohmann_json like the real package.
set(_keel_nlohmann_headers /usr/include/nlohmann)
if(NOT EXISTS "${_keel_nlohmann_headers}/json.hpp")
  set(nlohmann_json_FOUND FALSE)
  set(nlohmann_json_NOT_FOUND_MESSAGE
    "no ${_keel_nlohmann_headers}/json.hpp: install Debian's nlohmann-json3-dev (scripts/windows.sh does)")
  return()
endif()
set(_keel_nlohmann_dir "${CMAKE_BINARY_DIR}/windows-headers/nlohmann_json")
if(NOT EXISTS "${_keel_nlohmann_dir}/nlohmann")
  file(MAKE_DIRECTORY "${_keel_nlohmann_dir}")
  file(CREATE_LINK "${_keel_nlohmann_headers}" "${_keel_nlohmann_dir}/nlohmann" SYMBOLIC)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_keel_nlohmann_dir}")
endif()
