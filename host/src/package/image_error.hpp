#pragma once
// What the binary readers (elf_reader.hpp, pe_reader.hpp, plugin_image.hpp) report instead of
// section bytes.

#include <string>

namespace keel::host::package {

struct ImageError {
  std::string message;  ///< e.g. "not an ELF file", "truncated: section headers end past the file"
};

}  // namespace keel::host::package
