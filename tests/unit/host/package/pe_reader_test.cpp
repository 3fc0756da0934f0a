#include "package/pe_reader.hpp"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

#include "package/plugin_image.hpp"
#include "temp_dir.hpp"

using keel::host::package::ImageError;
using keel::host::package::ImageFormat;
using keel::host::package::ManifestSection;
using keel::host::package::read_manifest_section;
using keel::host::package::read_manifest_section_from_file;
using keel::host::package::read_pe_section;
using keel::host::package::read_pe_section_from_file;

namespace {

const std::string kManifest = std::string{R"({"name":"probe","version":"1.0.0","abi":"1.0"})"} + '\0';
const std::string kText{"\x55\x48\x89\xe5\xc3", 5};

constexpr std::uint32_t kPeOffset = 0x40;
constexpr std::uint32_t kOptionalSize = 240;  // PE32+ with 16 data directories
constexpr std::uint32_t kFileAlignment = 0x200;

struct Section {
  std::string name;  // at most 8 bytes
  std::string data;
  bool exact_virtual_size = true;  // false: VirtualSize 0, as in an object file
};

struct Options {
  std::uint16_t machine = 0x8664;
  std::uint16_t characteristics = 0x2022;  // DLL, executable image, large address aware
  std::uint16_t magic = 0x20B;
  std::vector<Section> sections = {{".text", kText}, {".keelmf", kManifest}};
};

void put16(std::string& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<char>(v & 0xFF);
  b[at + 1] = static_cast<char>(v >> 8);
}
void put32(std::string& b, std::size_t at, std::uint32_t v) {
  put16(b, at, static_cast<std::uint16_t>(v & 0xFFFF));
  put16(b, at + 2, static_cast<std::uint16_t>(v >> 16));
}

std::uint32_t aligned(std::size_t n) { return static_cast<std::uint32_t>((n + kFileAlignment - 1) / kFileAlignment * kFileAlignment); }

// A minimal PE32+ DLL as a linker lays it out:
//   [DOS header][PE\0\0][COFF header][optional header][section table] pad, then each section's
//   raw data padded with NULs to the file alignment.
std::string build_image(const Options& options = {}) {
  const std::size_t table_at = kPeOffset + 4 + 20 + kOptionalSize;
  std::string image(aligned(table_at + 40 * options.sections.size()), '\0');
  image[0] = 'M';
  image[1] = 'Z';
  put32(image, 0x3C, kPeOffset);
  std::memcpy(image.data() + kPeOffset, "PE\0\0", 4);
  const std::size_t coff = kPeOffset + 4;
  put16(image, coff, options.machine);
  put16(image, coff + 2, static_cast<std::uint16_t>(options.sections.size()));
  put16(image, coff + 16, kOptionalSize);
  put16(image, coff + 18, options.characteristics);
  put16(image, coff + 20, options.magic);
  for (std::size_t i = 0; i < options.sections.size(); ++i) {
    const auto& s = options.sections[i];
    const std::size_t at = table_at + 40 * i;
    std::memcpy(image.data() + at, s.name.data(), s.name.size());
    put32(image, at + 8, s.exact_virtual_size ? static_cast<std::uint32_t>(s.data.size()) : 0);
    put32(image, at + 12, static_cast<std::uint32_t>(0x1000 * (i + 1)));  // VirtualAddress
    put32(image, at + 16, aligned(s.data.size()));                       // SizeOfRawData
    put32(image, at + 20, static_cast<std::uint32_t>(image.size()));       // PointerToRawData
    std::string raw = s.data;
    raw.resize(aligned(s.data.size()), '\0');
    image += raw;
  }
  return image;
}

std::string error_of(const std::variant<std::string, ImageError>& result) {
  if (const auto* e = std::get_if<ImageError>(&result)) return e->message;
  return "(no error)";
}
std::string manifest_error(const std::string& image) { return error_of(read_pe_section(image, ".keelmf")); }

}  // namespace

TEST_CASE("pe reader reads a section's own bytes, not the file alignment's padding", "[plugins][pe]") {
  const auto image = build_image();
  const auto manifest = read_pe_section(image, ".keelmf");
  REQUIRE(std::holds_alternative<std::string>(manifest));
  CHECK(std::get<std::string>(manifest) == kManifest);
  CHECK(std::get<std::string>(read_pe_section(image, ".text")) == kText);

  SECTION("without a VirtualSize (0, as in an object file) the raw size counts") {
    Options options;
    options.sections[1].exact_virtual_size = false;
    const auto raw = read_pe_section(build_image(options), ".keelmf");
    REQUIRE(std::holds_alternative<std::string>(raw));
    CHECK(std::get<std::string>(raw).size() == 512);
    CHECK(std::get<std::string>(raw).starts_with(kManifest));
  }
  SECTION("a name is matched whole: a prefix or a longer name is another section") {
    CHECK(manifest_error(build_image({.sections = {{".keelm", kManifest}}})) ==
          "no .keelmf section (not a Keel plugin, or built without KEEL_PLUGIN)");
    CHECK(error_of(read_pe_section(image, ".keel")) == "no .keel section (not a Keel plugin, or built without KEEL_PLUGIN)");
    CHECK(error_of(read_pe_section(image, ".keel_manifest")) ==
          "section name '.keel_manifest' does not fit a PE section header (1 to 8 bytes)");
  }
}

TEST_CASE("pe reader refuses what is not a 64-bit DLL, naming what it is", "[plugins][pe]") {
  CHECK(manifest_error("") == "not a PE file (no MZ header)");
  CHECK(manifest_error(std::string("\x7f" "ELF\x02\x01\x01", 7)) == "not a PE file (no MZ header)");
  auto image = build_image();
  image[kPeOffset + 1] = 'X';
  CHECK(manifest_error(image) == "not a PE file (no PE signature where the DOS header points)");
  image = build_image();
  put32(image, 0x3C, 0xFFFFFFF0u);
  CHECK(manifest_error(image) == "not a PE file (no PE signature where the DOS header points)");
  CHECK(manifest_error(build_image({.characteristics = 0x0022})) == "not a DLL (an executable or an object file)");
  CHECK(manifest_error(build_image({.machine = 0x014C})) ==
        "built for another machine (i386; plugins are 64-bit: x86_64 or aarch64)");
  CHECK(manifest_error(build_image({.machine = 0x01C4})) ==
        "built for another machine (machine 0x01c4; plugins are 64-bit: x86_64 or aarch64)");
  CHECK(std::holds_alternative<std::string>(read_pe_section(build_image({.machine = 0xAA64}), ".keelmf")));
  CHECK(manifest_error(build_image({.magic = 0x10B})) == "a 32-bit DLL (PE32); plugins are 64-bit (PE32+)");
  CHECK(manifest_error(build_image({.magic = 0x107})) == "not a PE32+ image (optional header magic is not 0x20b)");
  CHECK(manifest_error(build_image({.sections = {}})) == "no sections");
}

TEST_CASE("pe reader never reads past a truncated or lying image", "[plugins][pe]") {
  const auto image = build_image();
  // Exactly sized heap copies, so AddressSanitizer flags a read of even one byte too many. Only
  // the section's own bytes are read: a cut in the padding after them loses nothing.
  const std::size_t manifest_end = image.find(kManifest) + kManifest.size();
  for (std::size_t length = 0; length < image.size(); ++length) {
    INFO("length " << length);
    const auto copy = std::make_unique<char[]>(length == 0 ? 1 : length);
    std::memcpy(copy.get(), image.data(), length);
    const auto result = read_pe_section(std::string_view(copy.get(), length), ".keelmf");
    if (length < manifest_end) CHECK(std::holds_alternative<ImageError>(result));
    else CHECK(std::get<std::string>(result) == kManifest);
  }
  const std::size_t manifest_header = kPeOffset + 4 + 20 + kOptionalSize + 40;
  SECTION("raw data past the end of the file") {
    auto lying = image;
    put32(lying, manifest_header + 20, 0xFFFFFF00u);
    CHECK(manifest_error(lying) == "truncated: section .keelmf ends past the end of the file");
  }
  SECTION("a section over 16 MiB") {
    auto lying = image;
    put32(lying, manifest_header + 8, 0);
    put32(lying, manifest_header + 16, 0x7FFFFFFFu);
    CHECK(manifest_error(lying) == "section .keelmf is 2147483647 bytes; more than 16777216 is not a plugin's");
  }
  SECTION("a section with no raw data") {
    auto lying = image;
    put32(lying, manifest_header + 16, 0);
    CHECK(manifest_error(lying) == "section .keelmf has no data in the file");
  }
  SECTION("a section table past the end of the file") {
    auto lying = image;
    put16(lying, kPeOffset + 4 + 2, 90);
    CHECK(manifest_error(lying.substr(0, 1024)) == "truncated: the section table ends past the end of the file");
    put16(lying, kPeOffset + 4 + 2, 200);
    CHECK(manifest_error(lying) == "200 sections; at most 96 are allowed");
  }
}

TEST_CASE("a plugin file's manifest section is read by the file's format, from memory or from disk",
          "[plugins][pe]") {
  const keel::test::TempDir dir;
  const auto image = build_image();
  const auto in_memory = read_manifest_section(image);
  REQUIRE(std::holds_alternative<ManifestSection>(in_memory));
  CHECK(std::get<ManifestSection>(in_memory).format == ImageFormat::kPe);
  CHECK(std::get<ManifestSection>(in_memory).bytes == kManifest);

  // The name does not matter: a DLL named .so is still read as a DLL.
  const auto from_file = read_manifest_section_from_file(dir.write("probe.so", image));
  REQUIRE(std::holds_alternative<ManifestSection>(from_file));
  CHECK(std::get<ManifestSection>(from_file).format == ImageFormat::kPe);
  CHECK(std::get<ManifestSection>(from_file).bytes == kManifest);
  CHECK(std::get<std::string>(read_pe_section_from_file(dir.path() / "probe.so", ".keelmf")) == kManifest);

  // GNU ld rounds VirtualSize up to the section's alignment with NULs: the document keeps its
  // own NUL and loses the padding, and two documents stay two.
  const auto padded = read_manifest_section(build_image({.sections = {{".keelmf", kManifest + std::string(3, '\0')}}}));
  CHECK(std::get<ManifestSection>(padded).bytes == kManifest);
  const auto twice = read_manifest_section(build_image({.sections = {{".keelmf", kManifest + kManifest + '\0'}}}));
  CHECK(std::get<ManifestSection>(twice).bytes == kManifest + kManifest);

  const auto not_plugin = "not a plugin: neither an ELF shared object (.so) nor a PE32+ DLL (.dll)";
  CHECK(std::get<ImageError>(read_manifest_section("#!/bin/sh\n")).message == not_plugin);
  CHECK(std::get<ImageError>(read_manifest_section_from_file(dir.write("empty.dll", ""))).message == not_plugin);
  CHECK(std::get<ImageError>(read_manifest_section_from_file(dir.path() / "missing.dll")).message ==
        "cannot open: No such file or directory");
  CHECK(std::get<ImageError>(read_manifest_section(std::string_view("MZ", 2))).message == "truncated: DOS header incomplete");
}
