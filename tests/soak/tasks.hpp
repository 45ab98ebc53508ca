// The soak test's tasks. The soak binary is the client, the local pools' workers (they
// are forked from it) and the cluster's worker program (re-executed as `worker`), so all
// three know these by name. Each is deterministic: the client checks every answer
// against what the function must return for its input.
#pragma once

#include <cstdint>
#include <string>

namespace soak {

std::int64_t square(std::int64_t x);                  // "soak.square": x * x
std::int64_t affine(std::int64_t a, std::int64_t b);  // "soak.affine": a * b + 1
// "soak.picky": 3x + 1, or throws std::domain_error("soak: rejected input X") when
// rejected(x). The result and the message both name the input, so that unordered
// results can be matched to their inputs.
std::int64_t picky(std::int64_t x);
bool rejected(std::int64_t x);
std::int64_t picky_input(std::int64_t result);  // the x with picky(x) == result
std::string rejection_message(std::int64_t x);
std::string reverse(std::string s);  // "soak.reverse": s backwards
std::int64_t nap(std::int64_t ms);   // "soak.nap": sleeps ms, returns ms

// `n` bytes that depend on `seed` (payloads for soak.reverse).
std::string payload(std::uint64_t seed, std::size_t n);

}  // namespace soak
