# nlohmann_json for a Windows cross-build: Debian's nlohmann-json3-dev headers (header_only.cmake).
include("${CMAKE_CURRENT_LIST_DIR}/../header_only.cmake")
keel_windows_header_package(nlohmann_json::nlohmann_json HEADERS nlohmann)
