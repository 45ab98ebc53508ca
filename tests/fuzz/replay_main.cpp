// The fuzz targets without libFuzzer (the ordinary GCC build): runs LLVMFuzzerTestOneInput
// once over each file named, or each file in each directory named, so that ctest replays
// the seeds and every input that once crashed (tests/fuzz/regressions/) on every build.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::filesystem::path> inputs_of(const std::filesystem::path& p) {
  std::vector<std::filesystem::path> out;
  // A target that never crashed has no regressions directory yet (git keeps no empty one).
  if (!std::filesystem::exists(p)) return out;
  if (!std::filesystem::is_directory(p)) return {p};
  for (const auto& e : std::filesystem::directory_iterator(p))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());  // the same order on every run
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    for (const auto& path : inputs_of(argv[i])) {
      std::ifstream in(path, std::ios::binary);
      const std::vector<char> bytes{std::istreambuf_iterator<char>(in), {}};
      // Named before it runs: a crash then says which input it was.
      std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), bytes.size());
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++runs;
    }
  }
  std::fprintf(stderr, "replay: %zu inputs, all passed\n", runs);
  // No input at all means a wrong path, not a pass.
  return runs == 0 ? 1 : 0;
}
