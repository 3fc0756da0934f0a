#include "package/pe_reader.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "package/image_bytes.hpp"

namespace keel::host::package {
namespace {

// The layouts of the PE/COFF specification ("PE Format", Microsoft), little-endian, packed by
// hand: no <windows.h>, so this builds and reads the same on every platform.
constexpr std::uint64_t kDosLfanewOffset = 0x3C;  // u32: file offset of the "PE\0\0" signature
constexpr std::uint64_t kCoffHeaderSize = 20;
constexpr std::uint64_t kSectionHeaderSize = 40;
constexpr std::uint16_t kMagicPe32Plus = 0x20B;
constexpr std::uint16_t kMagicPe32 = 0x10B;
constexpr std::uint16_t kFileDll = 0x2000;  // IMAGE_FILE_DLL
constexpr std::uint16_t kMachineAmd64 = 0x8664;
constexpr std::uint16_t kMachineArm64 = 0xAA64;
constexpr std::uint16_t kMachineI386 = 0x014C;
// The loader's own limit is 96 sections; a plugin has a dozen.
constexpr std::uint16_t kMaxSections = 96;
constexpr std::uint64_t kMaxSection = 16 << 20;  // as elf_reader.cpp: more is not a plugin's

// The machine of the host this binary is: a DLL built for another cannot be loaded here, but
// every reader accepts both 64-bit machines Windows runs on, since `keel plugin inspect` reads
// a .dll on any platform. The answer names the machine so a mix-up is plain.
std::string machine_name(std::uint16_t machine) {
  switch (machine) {
    case kMachineAmd64: return "x86_64";
    case kMachineArm64: return "aarch64";
    case kMachineI386: return "i386";
    default: {
      static constexpr char kHex[] = "0123456789abcdef";
      std::string hex = "0x";
      for (int shift = 12; shift >= 0; shift -= 4) hex += kHex[(machine >> shift) & 0xF];
      return "machine " + hex;
    }
  }
}

std::uint16_t u16(const std::string& b, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(b[at]) | (static_cast<unsigned char>(b[at + 1]) << 8));
}
std::uint32_t u32(const std::string& b, std::size_t at) {
  return static_cast<std::uint32_t>(u16(b, at)) | (static_cast<std::uint32_t>(u16(b, at + 2)) << 16);
}

template <typename Bytes>
std::variant<std::string, ImageError> read_section(const Bytes& bytes, std::string_view section) {
  if (section.empty() || section.size() > 8)
    return ImageError{"section name '" + std::string(section) + "' does not fit a PE section header (1 to 8 bytes)"};
  const std::uint64_t size = bytes.size();
  std::string raw;
  if (!bytes.read(0, kPeMagic.size(), raw) || raw != kPeMagic) return ImageError{"not a PE file (no MZ header)"};
  if (!bytes.read(kDosLfanewOffset, 4, raw)) return ImageError{"truncated: DOS header incomplete"};
  const std::uint32_t pe_offset = u32(raw, 0);
  if (!bytes.read(pe_offset, 4, raw) || raw != std::string_view("PE\0\0", 4))
    return ImageError{"not a PE file (no PE signature where the DOS header points)"};
  std::string coff;
  if (!bytes.read(std::uint64_t{pe_offset} + 4, kCoffHeaderSize, coff)) return ImageError{"truncated: COFF header incomplete"};
  const std::uint16_t machine = u16(coff, 0);
  const std::uint16_t sections = u16(coff, 2);
  const std::uint16_t optional_size = u16(coff, 16);
  const std::uint16_t characteristics = u16(coff, 18);
  if ((characteristics & kFileDll) == 0) return ImageError{"not a DLL (an executable or an object file)"};
  if (machine != kMachineAmd64 && machine != kMachineArm64)
    return ImageError{"built for another machine (" + machine_name(machine) + "; plugins are 64-bit: x86_64 or aarch64)"};
  const std::uint64_t optional_at = std::uint64_t{pe_offset} + 4 + kCoffHeaderSize;
  if (optional_size < 2 || !bytes.read(optional_at, 2, raw)) return ImageError{"truncated: optional header missing"};
  const std::uint16_t magic = u16(raw, 0);
  if (magic == kMagicPe32) return ImageError{"a 32-bit DLL (PE32); plugins are 64-bit (PE32+)"};
  if (magic != kMagicPe32Plus) return ImageError{"not a PE32+ image (optional header magic is not 0x20b)"};
  if (sections == 0) return ImageError{"no sections"};
  if (sections > kMaxSections)
    return ImageError{std::to_string(sections) + " sections; at most " + std::to_string(kMaxSections) + " are allowed"};
  const std::uint64_t table_at = optional_at + optional_size;
  const std::uint64_t table_bytes = std::uint64_t{sections} * kSectionHeaderSize;
  std::string table;
  if (table_at > size || size - table_at < table_bytes || !bytes.read(table_at, table_bytes, table))
    return ImageError{"truncated: the section table ends past the end of the file"};

  std::array<char, 8> wanted{};  // a name shorter than 8 bytes is NUL-padded in the table
  std::memcpy(wanted.data(), section.data(), section.size());
  for (std::uint16_t i = 0; i < sections; ++i) {
    const std::size_t at = std::size_t{i} * kSectionHeaderSize;
    if (std::memcmp(table.data() + at, wanted.data(), wanted.size()) != 0) continue;
    const std::uint32_t virtual_size = u32(table, at + 8);
    const std::uint32_t raw_size = u32(table, at + 16);
    const std::uint32_t raw_offset = u32(table, at + 20);
    // Raw data is padded to the file alignment; VirtualSize is what the section holds (0 in
    // object files, where the raw size is exact). Past the raw data, memory is zero-filled.
    const std::uint64_t length = virtual_size != 0 && virtual_size < raw_size ? virtual_size : raw_size;
    if (raw_size == 0 || raw_offset == 0) return ImageError{"section " + std::string(section) + " has no data in the file"};
    if (length > kMaxSection)
      return ImageError{"section " + std::string(section) + " is " + std::to_string(length) + " bytes; more than " +
                        std::to_string(kMaxSection) + " is not a plugin's"};
    std::string out;
    if (raw_offset > size || size - raw_offset < length || !bytes.read(raw_offset, length, out))
      return ImageError{"truncated: section " + std::string(section) + " ends past the end of the file"};
    return out;
  }
  return ImageError{"no " + std::string(section) + " section (not a Keel plugin, or built without KEEL_PLUGIN)"};
}

}  // namespace

std::variant<std::string, ImageError> read_pe_section(std::string_view image, std::string_view section) {
  return read_section(detail::ImageBytes(image), section);
}

std::variant<std::string, ImageError> read_pe_section(const detail::FileBytes& file, std::string_view section) {
  return read_section(file, section);
}

std::variant<std::string, ImageError> read_pe_section_from_file(const std::filesystem::path& file,
                                                                 std::string_view section) {
  return detail::with_file(file, [section](const detail::FileBytes& bytes) { return read_section(bytes, section); });
}

}  // namespace keel::host::package
