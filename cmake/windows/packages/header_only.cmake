# keel_windows_header_package(<target> HEADERS <dir>... [DEFINITIONS <def>...]): for a Windows
# cross-build, an IMPORTED INTERFACE <target> over header-only libraries of Debian's native
# packages. Each /usr/include/<dir> is exposed through a directory that holds nothing but links
# to those, so no other native header (libc's above all) lands on the target's include path.
# The <Package>-config.cmake files next to this one call it; the toolchain file points
# find_package at them (x86_64-w64-mingw32.cmake).
include_guard(GLOBAL)

function(keel_windows_header_package target)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "HEADERS;DEFINITIONS")
  string(MAKE_C_IDENTIFIER "${target}" id)
  set(dir "${CMAKE_BINARY_DIR}/windows-headers/${id}")
  foreach(header IN LISTS ARG_HEADERS)
    if(NOT EXISTS "/usr/include/${header}")
      set(${CMAKE_FIND_PACKAGE_NAME}_FOUND FALSE PARENT_SCOPE)
      set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE
        "no /usr/include/${header}: install its Debian package (scripts/windows.sh does)" PARENT_SCOPE)
      return()
    endif()
    if(NOT EXISTS "${dir}/${header}")
      file(MAKE_DIRECTORY "${dir}")
      file(CREATE_LINK "/usr/include/${header}" "${dir}/${header}" SYMBOLIC)
    endif()
  endforeach()
  if(NOT TARGET ${target})
    add_library(${target} INTERFACE IMPORTED)
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dir}")
    if(ARG_DEFINITIONS)
      set_target_properties(${target} PROPERTIES INTERFACE_COMPILE_DEFINITIONS "${ARG_DEFINITIONS}")
    endif()
  endif()
endfunction()
