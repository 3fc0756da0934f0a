#include "package/elf_reader.hpp"

#include <cstdint>
#include <cstring>
#include <string>

#include "package/image_bytes.hpp"

namespace keel::host::package {
namespace {

using detail::load;

// The layouts and values of the System V ABI's ELF-64 object file format, little-endian,
// written out here rather than taken from <elf.h>: a Windows build reads .so files too.
struct Elf64Header {
  unsigned char e_ident[16];
  std::uint16_t e_type;
  std::uint16_t e_machine;
  std::uint32_t e_version;
  std::uint64_t e_entry;
  std::uint64_t e_phoff;
  std::uint64_t e_shoff;
  std::uint32_t e_flags;
  std::uint16_t e_ehsize;
  std::uint16_t e_phentsize;
  std::uint16_t e_phnum;
  std::uint16_t e_shentsize;
  std::uint16_t e_shnum;
  std::uint16_t e_shstrndx;
};
struct Elf64SectionHeader {
  std::uint32_t sh_name;
  std::uint32_t sh_type;
  std::uint64_t sh_flags;
  std::uint64_t sh_addr;
  std::uint64_t sh_offset;
  std::uint64_t sh_size;
  std::uint32_t sh_link;
  std::uint32_t sh_info;
  std::uint64_t sh_addralign;
  std::uint64_t sh_entsize;
};
static_assert(sizeof(Elf64Header) == 64 && sizeof(Elf64SectionHeader) == 64);

constexpr std::size_t kIdentSize = 16;
constexpr std::size_t kIdentClass = 4;
constexpr std::size_t kIdentData = 5;
constexpr unsigned char kClass64 = 2;
constexpr unsigned char kDataLittleEndian = 1;
constexpr std::uint16_t kTypeSharedObject = 3;  // ET_DYN
constexpr std::uint16_t kSectionUndefined = 0;  // SHN_UNDEF
constexpr std::uint32_t kSectionNoBits = 8;     // SHT_NOBITS
enum Machine : std::uint16_t {
  kMachine386 = 3,
  kMachinePpc64 = 21,
  kMachineArm = 40,
  kMachineX86_64 = 62,
  kMachineAarch64 = 183,
  kMachineRiscv = 243,
};

// The ELF machine this host runs on: a plugin built for another one cannot be loaded, and its
// section headers may not even mean what we think (docs/abi.md §7.1 step 1).
#if defined(__x86_64__)
constexpr std::uint16_t kHostMachine = kMachineX86_64;
#elif defined(__aarch64__)
constexpr std::uint16_t kHostMachine = kMachineAarch64;
#elif defined(__riscv) && __riscv_xlen == 64
constexpr std::uint16_t kHostMachine = kMachineRiscv;
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr std::uint16_t kHostMachine = kMachinePpc64;
#else
#error "keel: add this (little-endian, 64-bit) architecture's ELF e_machine"
#endif

std::string machine_name(std::uint16_t machine) {
  switch (machine) {
    case kMachineX86_64: return "x86_64";
    case kMachineAarch64: return "aarch64";
    case kMachine386: return "i386";
    case kMachineArm: return "arm";
    case kMachineRiscv: return "riscv";
    case kMachinePpc64: return "ppc64";
    default: return "e_machine " + std::to_string(machine);
  }
}

// Larger tables or sections than these are not a plugin's; a crafted file cannot make the
// reader allocate more (a manifest section is at most 1 MiB: manifest.hpp says why it fails).
constexpr std::uint64_t kMaxNameTable = 1 << 20;
constexpr std::uint64_t kMaxSection = 16 << 20;

template <typename Bytes>
std::variant<std::string, ImageError> read_section(const Bytes& bytes, std::string_view section) {
  const std::uint64_t size = bytes.size();
  Elf64Header eh{};
  std::string magic;
  if (size < kIdentSize || !bytes.read(0, kElfMagic.size(), magic) || magic != kElfMagic)
    return ImageError{"not an ELF file"};
  if (!load(bytes, 0, eh)) return ImageError{"truncated: ELF header incomplete"};
  if (eh.e_ident[kIdentClass] != kClass64) return ImageError{"not a 64-bit ELF file"};
  if (eh.e_ident[kIdentData] != kDataLittleEndian) return ImageError{"not a little-endian ELF file"};
  if (eh.e_machine != kHostMachine)
    return ImageError{"built for another machine (" + machine_name(eh.e_machine) + ", this host is " +
                    machine_name(kHostMachine) + ")"};
  if (eh.e_type != kTypeSharedObject) return ImageError{"not a shared object (ELF type is not ET_DYN)"};
  if (eh.e_shentsize != sizeof(Elf64SectionHeader)) return ImageError{"unexpected section header size"};
  if (eh.e_shnum == 0 || eh.e_shstrndx == kSectionUndefined || eh.e_shstrndx >= eh.e_shnum)
    return ImageError{"no section header string table"};
  const std::uint64_t table_bytes = std::uint64_t{eh.e_shnum} * sizeof(Elf64SectionHeader);
  std::string table;  // at most 65535 headers of 64 bytes
  if (eh.e_shoff > size || size - eh.e_shoff < table_bytes || !bytes.read(eh.e_shoff, table_bytes, table))
    return ImageError{"truncated: section headers end past the end of the file"};
  auto header = [&table](std::uint16_t index) {
    Elf64SectionHeader sh{};
    std::memcpy(&sh, table.data() + std::uint64_t{index} * sizeof(Elf64SectionHeader), sizeof sh);
    return sh;
  };

  const Elf64SectionHeader names = header(eh.e_shstrndx);
  if (names.sh_offset > size || size - names.sh_offset < names.sh_size)
    return ImageError{"truncated: section name table ends past the end of the file"};
  if (names.sh_size > kMaxNameTable)
    return ImageError{"section name table is " + std::to_string(names.sh_size) + " bytes; a plugin's is far smaller"};
  std::string strtab;
  if (!bytes.read(names.sh_offset, names.sh_size, strtab))
    return ImageError{"truncated: section name table ends past the end of the file"};

  for (std::uint16_t i = 0; i < eh.e_shnum; ++i) {
    const Elf64SectionHeader sh = header(i);
    if (sh.sh_name >= strtab.size()) continue;
    const auto rest = std::string_view(strtab).substr(sh.sh_name);
    const auto name = rest.substr(0, rest.find('\0'));
    if (name != section) continue;
    if (sh.sh_type == kSectionNoBits) return ImageError{"section " + std::string(section) + " has no data in the file"};
    if (sh.sh_offset > size || size - sh.sh_offset < sh.sh_size)
      return ImageError{"truncated: section " + std::string(section) + " ends past the end of the file"};
    if (sh.sh_size > kMaxSection)
      return ImageError{"section " + std::string(section) + " is " + std::to_string(sh.sh_size) +
                      " bytes; more than " + std::to_string(kMaxSection) + " is not a plugin's"};
    std::string out;
    if (!bytes.read(sh.sh_offset, sh.sh_size, out))
      return ImageError{"truncated: section " + std::string(section) + " ends past the end of the file"};
    return out;
  }
  return ImageError{"no " + std::string(section) + " section (not a Keel plugin, or built without KEEL_PLUGIN)"};
}

}  // namespace

std::variant<std::string, ImageError> read_elf_section(std::string_view image, std::string_view section) {
  return read_section(detail::ImageBytes(image), section);
}

std::variant<std::string, ImageError> read_elf_section(const detail::FileBytes& file, std::string_view section) {
  return read_section(file, section);
}

std::variant<std::string, ImageError> read_elf_section_from_file(const std::filesystem::path& file,
                                                                  std::string_view section) {
  return detail::with_file(file, [section](const detail::FileBytes& bytes) { return read_section(bytes, section); });
}

}  // namespace keel::host::package
