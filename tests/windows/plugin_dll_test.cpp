// Runs on Windows, or under Wine as ctest's emulator in the cross-build (docs/windows.md).
//   keel_windows_plugin_test DLL...            each plugin .dll is read the way the host reads
//       it, without loading it (its .keelmf manifest section), then loaded the way a host loads
//       it, from a private copy (platform::CodeCopy), with LoadLibraryExW, and its entry point
//       called: the table's ABI version, size, hooks and manifest pointer must agree with what was
//       read, and the original file must stay movable while its copy is loaded.
//   keel_windows_plugin_test --elf SO...       a Linux plugin's manifest, read on Windows by
//       the same reader (`keel plugin inspect` reads both formats on both platforms).
//   keel_windows_plugin_test --error TEXT FILE the reader refuses FILE with a message holding TEXT.
// Prints a line per file; exits 1 if any check failed.

#include <windows.h>

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <keel/plugin.h>

#include "package/plugin_image.hpp"
#include "platform/code_copy.hpp"

namespace {

namespace package = keel::host::package;
namespace platform = keel::host::platform;

struct Failure {
  std::string what;
};

// The manifest section of `file` in `format`, or why not.
std::variant<std::string, Failure> manifest_of(const std::filesystem::path& file, package::ImageFormat format) {
  auto read = package::read_manifest_section_from_file(file);
  if (auto* error = std::get_if<package::ImageError>(&read)) return Failure{"not readable: " + error->message};
  auto& section = std::get<package::ManifestSection>(read);
  if (section.format != format)
    return Failure{"read as a " + std::string(package::describe(section.format)) + ", expected a " +
                   std::string(package::describe(format))};
  std::string text = std::move(section.bytes);
  if (text.empty() || text.back() != '\0') return Failure{"the manifest section does not end with its NUL"};
  text.pop_back();
  if (text.find("\"name\"") == std::string::npos) return Failure{"the manifest section has no \"name\""};
  return text;
}

// Loads `file` and checks its entry point against `manifest` (the section read from the file),
// then runs `while_loaded` before letting it go.
template <typename WhileLoaded>
std::variant<std::string, Failure> load_and_check(const std::filesystem::path& file, std::string_view manifest,
                                                  WhileLoaded&& while_loaded) {
  const auto absolute = std::filesystem::absolute(file);
  HMODULE module = ::LoadLibraryExW(absolute.c_str(), nullptr, LOAD_WITH_ALTERED_SEARCH_PATH);
  if (module == nullptr) return Failure{"LoadLibraryExW failed, error " + std::to_string(::GetLastError())};
  std::variant<std::string, Failure> result = Failure{"unchecked"};
  const auto symbol = ::GetProcAddress(module, KEEL_PLUGIN_ENTRY_SYMBOL);
  // GetProcAddress returns a generic function pointer; the entry's type is the ABI's.
  const auto entry = reinterpret_cast<keel_plugin_entry_fn>(reinterpret_cast<void*>(symbol));
  const keel_plugin* plugin = entry != nullptr ? entry() : nullptr;
  if (entry == nullptr) {
    result = Failure{"no exported " KEEL_PLUGIN_ENTRY_SYMBOL};
  } else if (plugin == nullptr) {
    result = Failure{KEEL_PLUGIN_ENTRY_SYMBOL " returned NULL"};
  } else if (KEEL_ABI_MAJOR(plugin->abi_version) != KEEL_ABI_VERSION_MAJOR) {
    result = Failure{"ABI major " + std::to_string(KEEL_ABI_MAJOR(plugin->abi_version)) + ", expected " +
                     std::to_string(KEEL_ABI_VERSION_MAJOR)};
  } else if (plugin->struct_size != sizeof(keel_plugin)) {
    result = Failure{"struct_size " + std::to_string(plugin->struct_size) + ", expected " +
                     std::to_string(sizeof(keel_plugin))};
  } else if (plugin->create == nullptr || plugin->destroy == nullptr) {
    result = Failure{"create or destroy is NULL"};
  } else if (plugin->manifest == nullptr || std::string_view(plugin->manifest) != manifest) {
    result = Failure{"keel_plugin.manifest differs from the .keelmf section read from the file"};
  } else if (auto after = while_loaded(); std::holds_alternative<Failure>(after)) {
    result = std::move(after);
  } else {
    result = "ABI " + std::to_string(KEEL_ABI_MAJOR(plugin->abi_version)) + "." +
             std::to_string(KEEL_ABI_MINOR(plugin->abi_version)) + ", loaded from a private copy";
  }
  ::FreeLibrary(module);
  return result;
}

bool report(const std::string& file, const std::variant<std::string, Failure>& outcome) {
  if (const auto* failure = std::get_if<Failure>(&outcome)) {
    std::printf("FAIL %s: %s\n", file.c_str(), failure->what.c_str());
    return false;
  }
  std::printf("ok   %s: %s\n", file.c_str(), std::get<std::string>(outcome).c_str());
  return true;
}

// While `file`'s copy is loaded, the file itself can be moved away and back (replaced, for a host).
std::variant<std::string, Failure> still_movable(const std::filesystem::path& file) {
  auto moved = file;
  moved += ".moved";
  std::error_code ec;
  std::filesystem::rename(file, moved, ec);
  if (ec) return Failure{"the original cannot be moved while its copy is loaded: " + ec.message()};
  std::filesystem::rename(moved, file, ec);
  if (ec) return Failure{"the original cannot be moved back: " + ec.message()};
  return std::string();
}

bool check_dll(const std::string& file) {
  auto manifest = manifest_of(file, package::ImageFormat::kPe);
  if (const auto* failure = std::get_if<Failure>(&manifest)) return report(file, *failure);
  const auto& text = std::get<std::string>(manifest);
  const std::filesystem::path path(file);
  auto made = platform::CodeCopy::make(path, path.stem().string(), std::filesystem::absolute(path).parent_path() / ".keel-load");
  if (auto* error = std::get_if<std::string>(&made)) return report(file, Failure{"cannot copy it for loading: " + *error});
  auto& copy = std::get<platform::CodeCopy>(made);
  auto loaded = load_and_check(copy.path(), text, [&path] { return still_movable(path); });
  const auto copied_to = copy.path();
  copy.reset();
  if (std::filesystem::exists(copied_to)) loaded = Failure{"the private copy was not deleted once let go"};
  if (auto* ok = std::get_if<std::string>(&loaded)) *ok = "manifest " + std::to_string(text.size()) + " bytes, " + *ok;
  return report(file, loaded);
}

bool check_elf(const std::string& file) {
  auto manifest = manifest_of(file, package::ImageFormat::kElf);
  if (auto* text = std::get_if<std::string>(&manifest)) *text = "ELF manifest " + std::to_string(text->size()) + " bytes";
  return report(file, manifest);
}

bool check_error(const std::string& expected, const std::string& file) {
  const auto read = package::read_manifest_section_from_file(file);
  const auto* error = std::get_if<package::ImageError>(&read);
  if (error == nullptr) return report(file, Failure{"read, but should have been refused with '" + expected + "'"});
  if (error->message.find(expected) == std::string::npos)
    return report(file, Failure{"refused with '" + error->message + "', expected '" + expected + "'"});
  return report(file, "refused: " + error->message);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fprintf(stderr, "usage: keel_windows_plugin_test DLL... | --elf SO... | --error TEXT FILE\n");
    return 2;
  }
  bool ok = true;
  if (args[0] == "--error") {
    if (args.size() != 3) {
      std::fprintf(stderr, "--error takes TEXT and FILE\n");
      return 2;
    }
    ok = check_error(args[1], args[2]);
  } else if (args[0] == "--elf") {
    for (std::size_t i = 1; i < args.size(); ++i) ok = check_elf(args[i]) && ok;
  } else {
    for (const auto& file : args) ok = check_dll(file) && ok;
  }
  return ok ? 0 : 1;
}
