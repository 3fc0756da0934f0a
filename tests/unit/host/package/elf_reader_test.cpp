#include "package/elf_reader.hpp"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <elf.h>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include <sys/resource.h>

#include <catch2/catch.hpp>

#include "temp_dir.hpp"

using keel::host::package::ImageError;
using keel::host::package::read_elf_section;
using keel::host::package::read_elf_section_from_file;

namespace {

#if defined(__x86_64__)
constexpr Elf64_Half kHostMachine = EM_X86_64;
constexpr Elf64_Half kOtherMachine = EM_AARCH64;
constexpr std::string_view kHostName = "x86_64";
constexpr std::string_view kOtherName = "aarch64";
#elif defined(__aarch64__)
constexpr Elf64_Half kHostMachine = EM_AARCH64;
constexpr Elf64_Half kOtherMachine = EM_X86_64;
constexpr std::string_view kHostName = "aarch64";
constexpr std::string_view kOtherName = "x86_64";
#else
#error "add this architecture's e_machine"
#endif

const std::string kManifest = std::string{R"({"name":"probe","version":"1.0.0","abi":"1.0"})"} + '\0';
const std::string kText{"\x55\x48\x89\xe5\xc3", 5};

// Section indices in the synthetic image.
constexpr std::size_t kShStrTab = 1;
constexpr std::size_t kTextSection = 2;
constexpr std::size_t kManifestSection = 3;

struct Options {
  bool with_manifest = true;
};

// A minimal ELF64 little-endian ET_DYN image laid out as
//   [Elf64_Ehdr][.shstrtab][.text][.keel_manifest][pad to 8][section header table]
// The section header table comes last, so cutting the file anywhere breaks it.
std::string build_image(Options options = {}) {
  const std::string shstrtab{"\0.shstrtab\0.text\0.keel_manifest\0", 32};
  const auto shstrtab_off = sizeof(Elf64_Ehdr);
  const auto text_off = shstrtab_off + shstrtab.size();
  const auto manifest_off = text_off + kText.size();
  auto shoff = manifest_off + (options.with_manifest ? kManifest.size() : 0);
  shoff = (shoff + 7) / 8 * 8;
  const std::size_t count = options.with_manifest ? 4 : 3;

  std::string image(shoff + count * sizeof(Elf64_Shdr), '\0');
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_DYN;
  eh.e_machine = kHostMachine;
  eh.e_version = EV_CURRENT;
  eh.e_shoff = shoff;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = static_cast<Elf64_Half>(count);
  eh.e_shstrndx = static_cast<Elf64_Half>(kShStrTab);
  std::memcpy(image.data(), &eh, sizeof eh);
  std::memcpy(image.data() + shstrtab_off, shstrtab.data(), shstrtab.size());
  std::memcpy(image.data() + text_off, kText.data(), kText.size());
  if (options.with_manifest) std::memcpy(image.data() + manifest_off, kManifest.data(), kManifest.size());

  auto put = [&](std::size_t index, Elf64_Word name, Elf64_Word type, std::size_t offset, std::size_t size) {
    Elf64_Shdr sh{};
    sh.sh_name = name;
    sh.sh_type = type;
    sh.sh_offset = offset;
    sh.sh_size = size;
    sh.sh_addralign = 1;
    std::memcpy(image.data() + shoff + index * sizeof(Elf64_Shdr), &sh, sizeof sh);
  };
  put(0, 0, SHT_NULL, 0, 0);
  put(kShStrTab, 1, SHT_STRTAB, shstrtab_off, shstrtab.size());
  put(kTextSection, 11, SHT_PROGBITS, text_off, kText.size());
  if (options.with_manifest) put(kManifestSection, 17, SHT_PROGBITS, manifest_off, kManifest.size());
  return image;
}

Elf64_Ehdr header_of(const std::string& image) {
  Elf64_Ehdr eh{};
  std::memcpy(&eh, image.data(), sizeof eh);
  return eh;
}

void set_header(std::string& image, const Elf64_Ehdr& eh) { std::memcpy(image.data(), &eh, sizeof eh); }

Elf64_Shdr section_of(const std::string& image, std::size_t index) {
  Elf64_Shdr sh{};
  std::memcpy(&sh, image.data() + header_of(image).e_shoff + index * sizeof sh, sizeof sh);
  return sh;
}

void set_section(std::string& image, std::size_t index, const Elf64_Shdr& sh) {
  std::memcpy(image.data() + header_of(image).e_shoff + index * sizeof sh, &sh, sizeof sh);
}

std::string error_of(const std::variant<std::string, ImageError>& result) {
  if (const auto* e = std::get_if<ImageError>(&result)) return e->message;
  return "<no error; got " + std::to_string(std::get<std::string>(result).size()) + " bytes>";
}

std::string manifest_error(std::string_view image) { return error_of(read_elf_section(image, ".keel_manifest")); }

}  // namespace

TEST_CASE("elf reader returns the bytes of a named section", "[plugins][elf]") {
  const auto image = build_image();
  const auto manifest = read_elf_section(image, ".keel_manifest");
  REQUIRE(std::holds_alternative<std::string>(manifest));
  CHECK(std::get<std::string>(manifest) == kManifest);  // including the terminating NUL

  const auto text = read_elf_section(image, ".text");
  REQUIRE(std::holds_alternative<std::string>(text));
  CHECK(std::get<std::string>(text) == kText);
}

TEST_CASE("elf reader matches section names exactly", "[plugins][elf]") {
  const auto image = build_image();
  CHECK(manifest_error(image) == "<no error; got " + std::to_string(kManifest.size()) + " bytes>");
  CHECK(error_of(read_elf_section(image, ".keel")).find("no .keel section") == 0);
  CHECK(error_of(read_elf_section(image, ".keel_manifest2")).find("no .keel_manifest2 section") == 0);
}

TEST_CASE("elf reader refuses files that are not ELF64 little-endian shared objects", "[plugins][elf]") {
  CHECK(manifest_error("hello") == "not an ELF file");
  CHECK(manifest_error("") == "not an ELF file");
  CHECK(manifest_error("\x7f" "ELF") == "not an ELF file");  // shorter than e_ident
  CHECK(manifest_error(std::string(64, '\0')) == "not an ELF file");

  auto image = build_image();
  SECTION("header cut short") {
    CHECK(manifest_error(std::string_view(image).substr(0, 20)) == "truncated: ELF header incomplete");
  }
  SECTION("32-bit class") {
    image[EI_CLASS] = ELFCLASS32;
    CHECK(manifest_error(image) == "not a 64-bit ELF file");
  }
  SECTION("big-endian") {
    image[EI_DATA] = ELFDATA2MSB;
    CHECK(manifest_error(image) == "not a little-endian ELF file");
  }
  SECTION("executable") {
    auto eh = header_of(image);
    eh.e_type = ET_EXEC;
    set_header(image, eh);
    CHECK(manifest_error(image) == "not a shared object (ELF type is not ET_DYN)");
  }
  SECTION("relocatable object") {
    auto eh = header_of(image);
    eh.e_type = ET_REL;
    set_header(image, eh);
    CHECK(manifest_error(image) == "not a shared object (ELF type is not ET_DYN)");
  }
  SECTION("another machine") {
    auto eh = header_of(image);
    eh.e_machine = kOtherMachine;
    set_header(image, eh);
    CHECK(manifest_error(image) == "built for another machine (" + std::string(kOtherName) + ", this host is " +
                                       std::string(kHostName) + ")");
    eh.e_machine = 0xBEEF;
    set_header(image, eh);
    CHECK(manifest_error(image) ==
          "built for another machine (e_machine 48879, this host is " + std::string(kHostName) + ")");
  }
  SECTION("unexpected section header entry size") {
    auto eh = header_of(image);
    eh.e_shentsize = sizeof(Elf32_Shdr);
    set_header(image, eh);
    CHECK(manifest_error(image) == "unexpected section header size");
  }
}

TEST_CASE("elf reader never reads past a truncated image", "[plugins][elf]") {
  const auto image = build_image();
  // Exactly sized heap copies, so AddressSanitizer flags a read of even one byte too many.
  for (std::size_t length = 0; length < image.size(); ++length) {
    INFO("length " << length);
    const auto copy = std::make_unique<char[]>(length == 0 ? 1 : length);
    std::memcpy(copy.get(), image.data(), length);
    const auto result = read_elf_section(std::string_view(copy.get(), length), ".keel_manifest");
    CHECK(std::holds_alternative<ImageError>(result));
  }
  CHECK(std::holds_alternative<std::string>(read_elf_section(image, ".keel_manifest")));
}

TEST_CASE("elf reader reports a missing section", "[plugins][elf]") {
  const auto image = build_image({.with_manifest = false});
  CHECK(manifest_error(image) == "no .keel_manifest section (not a Keel plugin, or built without KEEL_PLUGIN)");
}

TEST_CASE("elf reader bounds-checks the section header table", "[plugins][elf]") {
  auto image = build_image();
  auto eh = header_of(image);
  const std::string past_end = "truncated: section headers end past the end of the file";

  SECTION("table offset past the end") {
    eh.e_shoff = image.size();
    set_header(image, eh);
    CHECK(manifest_error(image) == past_end);
  }
  SECTION("table offset near 2^64") {
    eh.e_shoff = std::numeric_limits<Elf64_Off>::max() - 8;
    set_header(image, eh);
    CHECK(manifest_error(image) == past_end);
  }
  SECTION("more sections than the file holds") {
    eh.e_shnum = 0xFF00;
    eh.e_shstrndx = 1;
    set_header(image, eh);
    CHECK(manifest_error(image) == past_end);
  }
  SECTION("no sections") {
    eh.e_shnum = 0;
    set_header(image, eh);
    CHECK(manifest_error(image) == "no section header string table");
  }
  SECTION("e_shstrndx out of range") {
    eh.e_shstrndx = eh.e_shnum;
    set_header(image, eh);
    CHECK(manifest_error(image) == "no section header string table");
  }
  SECTION("e_shstrndx is SHN_UNDEF") {
    eh.e_shstrndx = SHN_UNDEF;
    set_header(image, eh);
    CHECK(manifest_error(image) == "no section header string table");
  }
  SECTION("e_shstrndx is SHN_XINDEX") {
    eh.e_shstrndx = SHN_XINDEX;
    set_header(image, eh);
    CHECK(manifest_error(image) == "no section header string table");
  }
}

TEST_CASE("elf reader bounds-checks section offsets, sizes and names", "[plugins][elf]") {
  auto image = build_image();
  const std::string manifest_past_end = "truncated: section .keel_manifest ends past the end of the file";
  const std::string names_past_end = "truncated: section name table ends past the end of the file";
  const std::string not_found = "no .keel_manifest section (not a Keel plugin, or built without KEEL_PLUGIN)";
  auto sh = section_of(image, kManifestSection);

  SECTION("section offset past the end") {
    sh.sh_offset = image.size() + 1;
    set_section(image, kManifestSection, sh);
    CHECK(manifest_error(image) == manifest_past_end);
  }
  SECTION("section ends one byte past the end") {
    sh.sh_offset = image.size() - sh.sh_size + 1;
    set_section(image, kManifestSection, sh);
    CHECK(manifest_error(image) == manifest_past_end);
  }
  SECTION("section ending exactly at the end is fine") {
    sh.sh_offset = image.size() - sh.sh_size;
    set_section(image, kManifestSection, sh);
    CHECK(std::holds_alternative<std::string>(read_elf_section(image, ".keel_manifest")));
  }
  SECTION("section size near 2^64") {
    sh.sh_size = std::numeric_limits<Elf64_Xword>::max();
    set_section(image, kManifestSection, sh);
    CHECK(manifest_error(image) == manifest_past_end);
  }
  SECTION("offset + size wraps around 2^64") {
    sh.sh_offset = 16;
    sh.sh_size = std::numeric_limits<Elf64_Xword>::max() - 8;
    set_section(image, kManifestSection, sh);
    CHECK(manifest_error(image) == manifest_past_end);
  }
  SECTION("section without file data") {
    sh.sh_type = SHT_NOBITS;
    set_section(image, kManifestSection, sh);
    CHECK(manifest_error(image) == "section .keel_manifest has no data in the file");
  }
  SECTION("empty section") {
    sh.sh_size = 0;
    set_section(image, kManifestSection, sh);
    const auto result = read_elf_section(image, ".keel_manifest");
    REQUIRE(std::holds_alternative<std::string>(result));
    CHECK(std::get<std::string>(result).empty());
  }
  SECTION("sh_name past the string table") {
    sh.sh_name = static_cast<Elf64_Word>(section_of(image, kShStrTab).sh_size);
    set_section(image, kManifestSection, sh);
    CHECK(manifest_error(image) == not_found);
    sh.sh_name = std::numeric_limits<Elf64_Word>::max();
    set_section(image, kManifestSection, sh);
    CHECK(manifest_error(image) == not_found);
  }
  SECTION("string table cut inside the name") {
    auto names = section_of(image, kShStrTab);
    names.sh_size = 17 + 5;  // ".keel" without its NUL
    set_section(image, kShStrTab, names);
    CHECK(manifest_error(image) == not_found);
    CHECK(std::holds_alternative<std::string>(read_elf_section(image, ".text")));
  }
  SECTION("string table past the end") {
    auto names = section_of(image, kShStrTab);
    names.sh_offset = image.size();
    names.sh_size = 1;
    set_section(image, kShStrTab, names);
    CHECK(manifest_error(image) == names_past_end);
    names.sh_offset = 1;
    names.sh_size = std::numeric_limits<Elf64_Xword>::max();
    set_section(image, kShStrTab, names);
    CHECK(manifest_error(image) == names_past_end);
  }
}

TEST_CASE("elf reader reads from a file", "[plugins][elf]") {
  const keel::test::TempDir dir;
  SECTION("synthetic plugin") {
    const auto file = dir.write("probe.so", build_image());
    const auto result = read_elf_section_from_file(file, ".keel_manifest");
    REQUIRE(std::holds_alternative<std::string>(result));
    CHECK(std::get<std::string>(result) == kManifest);
  }
  SECTION("missing file") {
    CHECK(error_of(read_elf_section_from_file(dir.path() / "missing.so", ".keel_manifest")) ==
          "cannot open: No such file or directory");
  }
  SECTION("empty file") {
    CHECK(error_of(read_elf_section_from_file(dir.write("empty.so", ""), ".keel_manifest")) == "not an ELF file");
  }
  SECTION("the test binary itself") {
    // A real ELF file written by the toolchain. Debian links PIE (ET_DYN) by default; a non-PIE
    // build is ET_EXEC, which the reader refuses by design. (Whether this binary has a
    // .keel_manifest section depends on which test files are linked into it.)
    const auto self = std::filesystem::read_symlink("/proc/self/exe");
    const auto names = read_elf_section_from_file(self, ".shstrtab");
    if (error_of(names) == "not a shared object (ELF type is not ET_DYN)") {
      SUCCEED("test binary is not PIE");
    } else {
      REQUIRE(std::holds_alternative<std::string>(names));
      CHECK(std::get<std::string>(names).find(std::string{".text"} + '\0') != std::string::npos);
      CHECK(std::get<std::string>(names).find(std::string{".shstrtab"} + '\0') != std::string::npos);
      CHECK(error_of(read_elf_section_from_file(self, ".no_such_section")) ==
            "no .no_such_section section (not a Keel plugin, or built without KEEL_PLUGIN)");
    }
  }
}

TEST_CASE("elf reader reads a file's headers and one section, however large the file is", "[plugins][elf]") {
  const keel::test::TempDir dir;
  const auto file = dir.write("huge.so", build_image());
  std::filesystem::resize_file(file, std::uint64_t{1} << 30);  // a 1 GiB sparse file costs no disk
  rusage before{};
  REQUIRE(::getrusage(RUSAGE_SELF, &before) == 0);
  const auto result = read_elf_section_from_file(file, ".keel_manifest");
  rusage after{};
  REQUIRE(::getrusage(RUSAGE_SELF, &after) == 0);
  REQUIRE(std::holds_alternative<std::string>(result));
  CHECK(std::get<std::string>(result) == kManifest);
  CHECK(after.ru_maxrss - before.ru_maxrss < 64 * 1024);  // KiB: nowhere near the file's size
}
