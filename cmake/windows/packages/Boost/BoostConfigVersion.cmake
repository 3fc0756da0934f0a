# The version of the Boost headers the shim exposes: Debian's own version file answers (found by
# glob: the multiarch directory and the version are the build machine's).
file(GLOB _keel_boost_version /usr/lib/*/cmake/Boost-*/BoostConfigVersion.cmake)
if(_keel_boost_version)
  list(SORT _keel_boost_version COMPARE NATURAL ORDER DESCENDING)
  list(GET _keel_boost_version 0 _keel_boost_version_file)
  include("${_keel_boost_version_file}")
else()
  set(PACKAGE_VERSION "unknown")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
