#include "package/sha256.hpp"

#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "temp_dir.hpp"

using keel::host::package::sha256_file_hex;
using keel::host::package::sha256_hex;

namespace {

// 200000 bytes: more than three of the file reader's 64 KiB chunks, not a multiple of 64.
std::string patterned_bytes() {
  std::string out(200000, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>((i * 7 + 3) & 0xFF);
  return out;
}

}  // namespace

TEST_CASE("sha256 matches the FIPS 180-4 example vectors", "[plugins][sha256]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                   "mnopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  CHECK(sha256_hex(std::string(1'000'000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 pads correctly around the 64-byte block boundary", "[plugins][sha256]") {
  // 55 bytes is the longest message whose padding fits one block; 56..63 need a second block.
  const std::vector<std::pair<std::size_t, std::string>> cases = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {57, "f13b2d724659eb3bf47f2dd6af1accc87b81f09f59f2b75e5c0bed6589dfe8c6"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
      {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
  };
  for (const auto& [length, digest] : cases) {
    INFO("length " << length);
    CHECK(sha256_hex(std::string(length, 'a')) == digest);
  }
}

TEST_CASE("sha256 of binary data includes NUL and high bytes", "[plugins][sha256]") {
  CHECK(sha256_hex(patterned_bytes()) == "ec0ebf98b6f2954bf0f7b839402b1ba245996c39d18e155414e91a2b4353c157");
  const std::string with_nul("a\0b", 3);
  CHECK(sha256_hex(with_nul) != sha256_hex("ab"));
}

TEST_CASE("sha256 of a file equals sha256 of its contents", "[plugins][sha256]") {
  const keel::test::TempDir dir;

  SECTION("small file") {
    const auto file = dir.write("abc.bin", "abc");
    CHECK(sha256_file_hex(file) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  }
  SECTION("empty file") {
    const auto file = dir.write("empty.bin", "");
    CHECK(sha256_file_hex(file) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }
  SECTION("file larger than the read buffer") {
    const auto file = dir.write("big.bin", patterned_bytes());
    CHECK(sha256_file_hex(file) == "ec0ebf98b6f2954bf0f7b839402b1ba245996c39d18e155414e91a2b4353c157");
  }
  SECTION("exactly one read buffer") {
    const std::string content(65536, 'x');
    const auto file = dir.write("chunk.bin", content);
    CHECK(sha256_file_hex(file) == sha256_hex(content));
  }
}

TEST_CASE("sha256 of a file that cannot be read is nullopt", "[plugins][sha256]") {
  const keel::test::TempDir dir;
  CHECK_FALSE(sha256_file_hex(dir.path() / "missing.so").has_value());
  // A directory opens on Linux but every read fails with EISDIR: that is not an empty file.
  CHECK_FALSE(sha256_file_hex(dir.path()).has_value());
}
