// The fuzz targets' memory oracle: the codec sizes what it allocates from the bytes it is
// given (docs/PROTOCOL.md §8, "A 5-byte message cannot declare gigabytes"), so one input
// must never make the heap grow by more than a fixed multiple of its size. Counts malloc
// (msgpack's zones and operator new both come through it): with sanitizer hooks under
// libFuzzer, by interposing malloc and free in the replay build.
#pragma once

#include <cstddef>

namespace fuzz {

// What the heap may grow by while one input runs: generous for what decoding honestly
// needs (a vector of structs from one byte per element), far below an amplification.
inline constexpr std::size_t kBytesPerInputByte = 256;
inline constexpr std::size_t kBaseBytes = std::size_t{8} << 20;

// Starts measuring one input.
void budget_start();
// Aborts, naming `target`, if the heap grew by more than the budget of `size` bytes of input
// at any point since budget_start().
void budget_check(const char* target, std::size_t size);

}  // namespace fuzz
