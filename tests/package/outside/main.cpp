// Built against an installed mqpool: map a registered task on a local pool of 2.
#include <cstdio>
#include <exception>
#include <mqpool/mqpool.hpp>
#include <vector>

int square(int x) { return x * x; }
MQPOOL_TASK(square);

int main() {
  try {
    std::vector<int> inputs;
    for (int i = 0; i < 100; ++i) inputs.push_back(i);

    mqpool::Pool pool(2);
    const std::vector<int> results = pool.map(square, inputs);

    if (results.size() != inputs.size()) {
      std::fprintf(stderr, "outside: %zu results for %zu inputs\n", results.size(), inputs.size());
      return 1;
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (results[i] != inputs[i] * inputs[i]) {
        std::fprintf(stderr, "outside: square(%d) gave %d\n", inputs[i], results[i]);
        return 1;
      }
    }
    std::printf("outside: map of %zu squares on an installed mqpool: ok\n", results.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "outside: %s\n", e.what());
    return 1;
  }
}
