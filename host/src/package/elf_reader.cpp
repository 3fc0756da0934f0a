#include "package/elf_reader.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <elf.h>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace keel::host::package {
namespace {

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

// Where the reader's bytes come from: an image in memory, or a file read range by range (a
// dropped-in file may be huge or sparse; only its headers and two sections are read).
class ImageBytes {
 public:
  explicit ImageBytes(std::string_view image) : image_(image) {}
  [[nodiscard]] std::uint64_t size() const { return image_.size(); }
  // `len` bytes at `offset` into `out`; false if they are not all there.
  bool read(std::uint64_t offset, std::uint64_t len, std::string& out) const {
    if (offset > image_.size() || image_.size() - offset < len) return false;
    out.assign(image_.substr(offset, len));
    return true;
  }

 private:
  std::string_view image_;
};

class FileBytes {
 public:
  FileBytes(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  [[nodiscard]] std::uint64_t size() const { return size_; }
  bool read(std::uint64_t offset, std::uint64_t len, std::string& out) const {
    if (offset > size_ || size_ - offset < len) return false;
    out.resize(len);
    for (std::uint64_t done = 0; done < len;) {
      const auto n = ::pread(fd_, out.data() + done, len - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::uint64_t>(n);
    }
    return true;
  }

 private:
  int fd_;
  std::uint64_t size_;
};

// Larger tables or sections than these are not a plugin's; a crafted file cannot make the
// reader allocate more (a manifest section is at most 1 MiB: manifest.hpp says why it fails).
constexpr std::uint64_t kMaxNameTable = 1 << 20;
constexpr std::uint64_t kMaxSection = 16 << 20;

template <typename T, typename Bytes>
bool load(const Bytes& bytes, std::uint64_t offset, T& out) {
  std::string raw;
  if (!bytes.read(offset, sizeof(T), raw)) return false;
  std::memcpy(&out, raw.data(), sizeof(T));
  return true;
}

template <typename Bytes>
std::variant<std::string, ElfError> read_section(const Bytes& bytes, std::string_view section) {
  const std::uint64_t size = bytes.size();
  Elf64_Ehdr eh{};
  std::string magic;
  if (size < EI_NIDENT || !bytes.read(0, SELFMAG, magic) || std::memcmp(magic.data(), ELFMAG, SELFMAG) != 0)
    return ElfError{"not an ELF file"};
  if (!load(bytes, 0, eh)) return ElfError{"truncated: ELF header incomplete"};
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
  std::string table;  // at most 65535 headers of 64 bytes
  if (eh.e_shoff > size || size - eh.e_shoff < table_bytes || !bytes.read(eh.e_shoff, table_bytes, table))
    return ElfError{"truncated: section headers end past the end of the file"};
  auto header = [&table](std::uint16_t index) {
    Elf64_Shdr sh{};
    std::memcpy(&sh, table.data() + std::uint64_t{index} * sizeof(Elf64_Shdr), sizeof sh);
    return sh;
  };

  const Elf64_Shdr names = header(eh.e_shstrndx);
  if (names.sh_offset > size || size - names.sh_offset < names.sh_size)
    return ElfError{"truncated: section name table ends past the end of the file"};
  if (names.sh_size > kMaxNameTable)
    return ElfError{"section name table is " + std::to_string(names.sh_size) + " bytes; a plugin's is far smaller"};
  std::string strtab;
  if (!bytes.read(names.sh_offset, names.sh_size, strtab))
    return ElfError{"truncated: section name table ends past the end of the file"};

  for (std::uint16_t i = 0; i < eh.e_shnum; ++i) {
    const Elf64_Shdr sh = header(i);
    if (sh.sh_name >= strtab.size()) continue;
    const auto rest = std::string_view(strtab).substr(sh.sh_name);
    const auto name = rest.substr(0, rest.find('\0'));
    if (name != section) continue;
    if (sh.sh_type == SHT_NOBITS) return ElfError{"section " + std::string(section) + " has no data in the file"};
    if (sh.sh_offset > size || size - sh.sh_offset < sh.sh_size)
      return ElfError{"truncated: section " + std::string(section) + " ends past the end of the file"};
    if (sh.sh_size > kMaxSection)
      return ElfError{"section " + std::string(section) + " is " + std::to_string(sh.sh_size) +
                      " bytes; more than " + std::to_string(kMaxSection) + " is not a plugin's"};
    std::string out;
    if (!bytes.read(sh.sh_offset, sh.sh_size, out))
      return ElfError{"truncated: section " + std::string(section) + " ends past the end of the file"};
    return out;
  }
  return ElfError{"no " + std::string(section) + " section (not a Keel plugin, or built without KEEL_PLUGIN)"};
}

}  // namespace

std::variant<std::string, ElfError> read_elf_section(std::string_view image, std::string_view section) {
  return read_section(ImageBytes(image), section);
}

std::variant<std::string, ElfError> read_elf_section_from_file(const std::filesystem::path& file,
                                                                std::string_view section) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ElfError{"cannot open: " + std::string(std::strerror(errno))};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return ElfError{"cannot read: " + std::string(std::strerror(e))};
  }
  auto result = read_section(FileBytes(fd, static_cast<std::uint64_t>(st.st_size)), section);
  ::close(fd);
  return result;
}

}  // namespace keel::host::package
