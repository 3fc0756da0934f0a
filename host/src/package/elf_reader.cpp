#include "package/elf_reader.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <elf.h>
#include <fstream>
#include <sstream>
#include <string>

namespace keel::host::package {
namespace {

// Copy a trivially copyable struct from `image` at `offset`, if it lies inside.
template <typename T>
bool load(std::string_view image, std::uint64_t offset, T& out) {
  if (offset > image.size() || image.size() - offset < sizeof(T)) return false;
  std::memcpy(&out, image.data() + offset, sizeof(T));
  return true;
}

// The ELF machine this host runs on: a plugin built for another one cannot be loaded, and its
// section headers may not even mean what we think (docs/abi.md §7.1 step 1).
#if defined(__x86_64__)
constexpr Elf64_Half kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr Elf64_Half kHostMachine = EM_AARCH64;
#elif defined(__riscv) && __riscv_xlen == 64
constexpr Elf64_Half kHostMachine = EM_RISCV;
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr Elf64_Half kHostMachine = EM_PPC64;
#else
#error "keel: add this (little-endian, 64-bit) architecture's ELF e_machine"
#endif

std::string machine_name(Elf64_Half machine) {
  switch (machine) {
    case EM_X86_64: return "x86_64";
    case EM_AARCH64: return "aarch64";
    case EM_386: return "i386";
    case EM_ARM: return "arm";
    case EM_RISCV: return "riscv";
    case EM_PPC64: return "ppc64";
    default: return "e_machine " + std::to_string(machine);
  }
}

}  // namespace

std::variant<std::string, ElfError> read_elf_section(std::string_view image, std::string_view section) {
  Elf64_Ehdr eh{};
  if (image.size() < EI_NIDENT || std::memcmp(image.data(), ELFMAG, SELFMAG) != 0) return ElfError{"not an ELF file"};
  if (!load(image, 0, eh)) return ElfError{"truncated: ELF header incomplete"};
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return ElfError{"not a 64-bit ELF file"};
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return ElfError{"not a little-endian ELF file"};
  if (eh.e_machine != kHostMachine)
    return ElfError{"built for another machine (" + machine_name(eh.e_machine) + ", this host is " +
                    machine_name(kHostMachine) + ")"};
  if (eh.e_type != ET_DYN) return ElfError{"not a shared object (ELF type is not ET_DYN)"};
  if (eh.e_shentsize != sizeof(Elf64_Shdr)) return ElfError{"unexpected section header size"};
  if (eh.e_shnum == 0 || eh.e_shstrndx == SHN_UNDEF || eh.e_shstrndx >= eh.e_shnum)
    return ElfError{"no section header string table"};
  const std::uint64_t table_bytes = std::uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr);
  if (eh.e_shoff > image.size() || image.size() - eh.e_shoff < table_bytes)
    return ElfError{"truncated: section headers end past the end of the file"};

  Elf64_Shdr names{};
  load(image, eh.e_shoff + std::uint64_t{eh.e_shstrndx} * sizeof(Elf64_Shdr), names);
  if (names.sh_offset > image.size() || image.size() - names.sh_offset < names.sh_size)
    return ElfError{"truncated: section name table ends past the end of the file"};
  const std::string_view strtab = image.substr(names.sh_offset, names.sh_size);

  for (std::uint16_t i = 0; i < eh.e_shnum; ++i) {
    Elf64_Shdr sh{};
    load(image, eh.e_shoff + std::uint64_t{i} * sizeof(Elf64_Shdr), sh);
    if (sh.sh_name >= strtab.size()) continue;
    const auto rest = strtab.substr(sh.sh_name);
    const auto name = rest.substr(0, rest.find('\0'));
    if (name != section) continue;
    if (sh.sh_type == SHT_NOBITS) return ElfError{"section " + std::string(section) + " has no data in the file"};
    if (sh.sh_offset > image.size() || image.size() - sh.sh_offset < sh.sh_size)
      return ElfError{"truncated: section " + std::string(section) + " ends past the end of the file"};
    return std::string(image.substr(sh.sh_offset, sh.sh_size));
  }
  return ElfError{"no " + std::string(section) + " section (not a Keel plugin, or built without KEEL_PLUGIN)"};
}

std::variant<std::string, ElfError> read_elf_section_from_file(const std::filesystem::path& file,
                                                                std::string_view section) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return ElfError{"cannot open: " + std::string(std::strerror(errno))};
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return read_elf_section(bytes.view(), section);
}

}  // namespace keel::host::package
