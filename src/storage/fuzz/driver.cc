// A libFuzzer-compatible driver for compilers without libFuzzer (GCC; clang 14 cannot compile
// <expected>): replays every corpus file, then feeds random mutations of the corpus until the
// time runs out. Build it with sanitizers; a crash prints the input's path or writes it to
// crash-<n>.bin.
//   fuzzer [-max_total_time=SECONDS] [-seed=N] [CORPUS_DIR_OR_FILE...]
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "storage/fuzz/fuzz.h"

extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace {

std::string current;

void dump_current() {
  static int n = 0;
  std::string name = "crash-" + std::to_string(n++) + ".bin";
  std::ofstream(name, std::ios::binary).write(current.data(), std::streamsize(current.size()));
  std::fprintf(stderr, "fuzz: input that crashed written to %s\n", name.c_str());
}

void run(const std::string& input) {
  current = input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(current.data()), current.size());
}

std::string mutate(std::string s, const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  int rounds = 1 + int(rng() % 8);
  for (int i = 0; i < rounds; ++i) {
    size_t pos = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 7) {
      case 0:
        if (!s.empty()) s[pos] = char(s[pos] ^ (1 << (rng() % 8)));
        break;
      case 1:
        if (!s.empty()) s[pos] = char(rng());
        break;
      case 2: {  // an interesting big-endian integer
        static const uint64_t values[] = {0,          1,          0x7f,   0x80,
                                          0xff,       0x200,      0x1000, 0x10000,
                                          0x7fffffff, 0xffffffff, ~0ull,  1ull << 63};
        uint64_t v = values[rng() % std::size(values)];
        int width = 1 << (rng() % 4);
        for (int b = 0; b < width && pos + size_t(b) < s.size(); ++b)
          s[pos + size_t(b)] = char(v >> (8 * (width - 1 - b)));
        break;
      }
      case 3:
        if (!s.empty()) s.erase(pos, 1 + rng() % std::min<size_t>(s.size() - pos, 64));
        break;
      case 4:
        s.insert(pos, std::string(1 + rng() % 16, char(rng())));
        break;
      case 5: {  // splice in a piece of another input
        const std::string& o = corpus[rng() % corpus.size()];
        if (o.empty()) break;
        size_t from = rng() % o.size();
        size_t n = std::min<size_t>(o.size() - from, 1 + rng() % 256);
        s.replace(pos, std::min(n, s.size() - pos), o, from, n);
        break;
      }
      default:
        if (s.size() > 8) s.resize(rng() % s.size());
    }
  }
  if (s.size() > (1 << 20)) s.resize(1 << 20);
  return s;
}

void load(const std::filesystem::path& p, std::vector<std::string>& corpus) {
  if (std::filesystem::is_directory(p)) {
    for (const auto& e : std::filesystem::directory_iterator(p)) load(e.path(), corpus);
    return;
  }
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  corpus.push_back(ss.str());
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  uint64_t seed = std::random_device{}();
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("-max_total_time=", 0) == 0)
      seconds = std::stod(a.substr(16));
    else if (a.rfind("-seed=", 0) == 0)
      seed = std::stoull(a.substr(6));
    else if (a[0] != '-')
      load(a, corpus);
  }
  for (auto& s : vireo_fuzz_seeds()) corpus.push_back(std::move(s));
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(dump_current);
  for (const auto& c : corpus) run(c);
  std::mt19937_64 rng(seed);
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t execs = corpus.size();
  while (std::chrono::steady_clock::now() < end) {
    run(mutate(corpus[rng() % corpus.size()], corpus, rng));
    ++execs;
  }
  std::printf("fuzz: %llu inputs (%zu seeds, seed %llu) in %.0f s, no crash\n",
              static_cast<unsigned long long>(execs), corpus.size(),
              static_cast<unsigned long long>(seed), seconds);
  return 0;
}
