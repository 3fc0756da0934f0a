# spdlog for a Windows cross-build: Debian's libspdlog-dev and libfmt-dev headers, both used
# header-only (header_only.cmake); Debian's spdlog is configured for an external fmt.
include("${CMAKE_CURRENT_LIST_DIR}/../header_only.cmake")
keel_windows_header_package(spdlog::spdlog HEADERS spdlog fmt DEFINITIONS SPDLOG_FMT_EXTERNAL FMT_HEADER_ONLY)
