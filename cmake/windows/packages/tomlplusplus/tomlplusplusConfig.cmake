# toml++ for a Windows cross-build: Debian's libtomlplusplus-dev headers (header_only.cmake).
include("${CMAKE_CURRENT_LIST_DIR}/../header_only.cmake")
keel_windows_header_package(tomlplusplus::tomlplusplus HEADERS toml++)
