#include "keygen.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zmq.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace mqpool::cli {

namespace {

// Creates `path` with `mode` and writes `line` to it; never replaces a file.
void write_new(const std::string& path, mode_t mode, const std::string& line) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    throw std::runtime_error(path + ": " + std::strerror(errno) +
                             (errno == EEXIST ? " (refusing to replace a key)" : ""));
  const bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  const int err = errno;
  if (close(fd) != 0 || !ok) {
    unlink(path.c_str());
    throw std::runtime_error(path + ": " + std::strerror(ok ? errno : err));
  }
}

}  // namespace

void add_key_options(CLI::App& sub, KeyFiles& keys) {
  sub.add_option("--curve-secret", keys.curve_secret,
                 "CURVE: this side's secret key file (mqpool keygen NAME writes NAME.key)");
  sub.add_option("--broker-key", keys.broker_key, "CURVE: the broker's public key file (NAME.pub)");
}

int run_keygen(const std::string& name) {
  const std::string secret_file = name + ".key";
  const std::string public_file = name + ".pub";
  try {
    // Neither is written if either exists: a half-replaced pair would not match.
    for (const std::string* f : {&secret_file, &public_file})
      if (access(f->c_str(), F_OK) == 0)
        throw std::runtime_error(*f + " exists (refusing to replace a key)");
    std::array<char, 41> pub{}, sec{};
    if (zmq_curve_keypair(pub.data(), sec.data()) != 0)
      throw std::runtime_error(std::string("cannot make a key: ") + zmq_strerror(zmq_errno()));
    write_new(secret_file, 0600, std::string(sec.data()) + "\n");
    try {
      write_new(public_file, 0644, std::string(pub.data()) + "\n");
    } catch (...) {
      unlink(secret_file.c_str());
      throw;
    }
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "mqpool keygen: %s\n", e.what());
    return 1;
  }
  std::printf(
      "mqpool keygen: wrote %s (secret: keep it on this host) and %s (public: copy it "
      "to the broker's --authorized-keys directory, or to its clients and workers as "
      "--broker-key)\n",
      secret_file.c_str(), public_file.c_str());
  return 0;
}

}  // namespace mqpool::cli
