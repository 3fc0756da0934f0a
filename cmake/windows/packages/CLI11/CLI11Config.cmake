# CLI11 for a Windows cross-build: Debian's libcli11-dev headers (header_only.cmake).
include("${CMAKE_CURRENT_LIST_DIR}/../header_only.cmake")
keel_windows_header_package(CLI11::CLI11 HEADERS CLI)
