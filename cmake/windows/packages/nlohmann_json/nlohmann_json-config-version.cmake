# The version of the headers the shim exposes: Debian's own version file answers (the library
# is header-only, so its check is the same for every target).
include(/usr/share/cmake/nlohmann_json/nlohmann_jsonConfigVersion.cmake OPTIONAL RESULT_VARIABLE _keel_found)
if(NOT _keel_found)
  set(PACKAGE_VERSION "unknown")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
