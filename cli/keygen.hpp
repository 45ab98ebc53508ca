// `mqpool keygen NAME`: a CurveZMQ key pair for a broker, a worker or a client
// (docs/SECURITY.md).
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace mqpool::cli {

// The CURVE flags of a command that connects to a broker (status, run, bench): both or
// neither (PoolOptions::curve_secret_file, broker_key_file).
struct KeyFiles {
  std::string curve_secret;
  std::string broker_key;
};
void add_key_options(CLI::App& sub, KeyFiles& keys);

// Writes NAME.key (the secret key, mode 0600) and NAME.pub (the public key), each one
// line of Z85 as zmq_curve_keypair gives it. Refuses to replace either file. Returns the
// exit code: 0, or 1 after one line on stderr.
int run_keygen(const std::string& name);

}  // namespace mqpool::cli
