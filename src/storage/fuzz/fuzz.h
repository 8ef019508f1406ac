#pragma once
// The fuzz targets use libFuzzer's entry point, so the same file builds with clang's
// -fsanitize=fuzzer or with driver.cc (GCC: corpus replay plus random mutation, no coverage
// feedback). Each target also offers built-in seeds for an empty corpus.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
std::vector<std::string> vireo_fuzz_seeds();
