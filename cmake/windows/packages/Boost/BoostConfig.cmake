# Boost for a Windows cross-build: the header-only libraries (Asio, Beast, DLL) from Debian's
# libboost1.81-dev headers (header_only.cmake). Components other than "headers" are compiled
# libraries Debian does not build for mingw-w64: asking for one fails here.
include("${CMAKE_CURRENT_LIST_DIR}/../header_only.cmake")
foreach(component IN LISTS Boost_FIND_COMPONENTS)
  if(NOT component STREQUAL "headers")
    set(Boost_FOUND FALSE)
    set(Boost_NOT_FOUND_MESSAGE "Boost component '${component}' is not available for the Windows target (header-only libraries only)")
    return()
  endif()
endforeach()
# Asio: Windows 10's API; Boost.DLL over std::filesystem rather than Boost.Filesystem (compiled).
keel_windows_header_package(Boost::headers HEADERS boost DEFINITIONS _WIN32_WINNT=0x0A00 BOOST_DLL_USE_STD_FS)
