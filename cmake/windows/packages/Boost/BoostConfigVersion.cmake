# The version of the Boost headers the shim exposes: Debian's own version file answers.
include(/usr/lib/x86_64-linux-gnu/cmake/Boost-1.81.0/BoostConfigVersion.cmake OPTIONAL RESULT_VARIABLE _keel_found)
if(NOT _keel_found)
  set(PACKAGE_VERSION "unknown")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
