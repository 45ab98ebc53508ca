// The checks behind the command's flags: endpoints (endpoint.hpp), durations
// (duration.hpp) and log levels (log.hpp).
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "common/duration.hpp"
#include "common/endpoint.hpp"
#include "common/log.hpp"

namespace unit_flags {

using mqpool::detail::EndpointUse;
using namespace std::chrono_literals;

std::string bind_problem(const std::string& ep) {
  return mqpool::detail::endpoint_problem(ep, EndpointUse::bind);
}
std::string connect_problem(const std::string& ep) {
  return mqpool::detail::endpoint_problem(ep, EndpointUse::connect);
}

TEST(Endpoint, AcceptsWhatBindAndConnectTake) {
  for (const char* ep : {"tcp://127.0.0.1:5555", "tcp://*:5555", "tcp://127.0.0.1:*", "tcp://*:*",
                         "tcp://broker-host:1", "tcp://[::1]:65535", "ipc:///tmp/mqpool.sock"})
    EXPECT_EQ(bind_problem(ep), "") << ep;
  for (const char* ep : {"tcp://127.0.0.1:5555", "tcp://broker.example:65535", "tcp://[::1]:80",
                         "ipc://relative/path"})
    EXPECT_EQ(connect_problem(ep), "") << ep;
}

TEST(Endpoint, RefusesWithAReason) {
  EXPECT_NE(bind_problem("foo").find("not an endpoint"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://127.0.0.1:99999").find("above 65535"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://127.0.0.1:123456789012345678901").find("above 65535"),
            std::string::npos);
  EXPECT_NE(bind_problem("tcp://127.0.0.1").find("no port"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://[::1]").find("no port"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://127.0.0.1:").find("no port"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://127.0.0.1:0").find("port 0"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://127.0.0.1:http").find("not a number"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://:5555").find("no host"), std::string::npos);
  EXPECT_NE(bind_problem("tcp://::1:5555").find("brackets"), std::string::npos);
  EXPECT_NE(bind_problem("udp://host:1").find("'udp'"), std::string::npos);
  EXPECT_NE(bind_problem("ipc://").find("no path"), std::string::npos);
  EXPECT_NE(bind_problem("ipc:///" + std::string(200, 'x')).find("bytes long"), std::string::npos);
  // Wildcards choose what to bind; a connect needs a real host and port.
  EXPECT_NE(connect_problem("tcp://*:5556"), "");
  EXPECT_NE(connect_problem("tcp://127.0.0.1:*"), "");
}

TEST(Endpoint, CheckNamesTheOptionAndTheEndpoint) {
  try {
    mqpool::detail::check_endpoint("--frontend", "foo", EndpointUse::bind);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--frontend foo: not an endpoint", 0), 0u) << e.what();
  }
  EXPECT_NO_THROW(mqpool::detail::check_endpoint("--backend", "tcp://*:5556", EndpointUse::bind));
}

TEST(Duration, ReadsUnitsAndPlainSeconds) {
  using mqpool::detail::parse_duration;
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("10s"), 10s);
  EXPECT_EQ(parse_duration("2m"), 120s);
  EXPECT_EQ(parse_duration("1h"), 3600s);
  EXPECT_EQ(parse_duration("3"), 3s);
  EXPECT_EQ(parse_duration("1.5"), 1500ms);
  EXPECT_EQ(parse_duration("0"), 0ms);
  for (const char* bad : {"", "soon", "10 s", "-1s", "+1s", "5x", "1e3", "s", "1ss", "9999h"})
    EXPECT_THROW(parse_duration(bad), std::invalid_argument) << bad;
}

TEST(LogLevel, KnowsExactlyTheDocumentedNames) {
  using mqpool::detail::parse_log_level;
  EXPECT_EQ(parse_log_level("trace"), spdlog::level::trace);
  EXPECT_EQ(parse_log_level("debug"), spdlog::level::debug);
  EXPECT_EQ(parse_log_level("info"), spdlog::level::info);
  EXPECT_EQ(parse_log_level("warn"), spdlog::level::warn);
  EXPECT_EQ(parse_log_level("error"), spdlog::level::err);
  EXPECT_EQ(parse_log_level("off"), spdlog::level::off);
  for (const char* bad : {"loud", "", "WARN", "warning", "critical"})
    EXPECT_FALSE(parse_log_level(bad).has_value()) << bad;
  EXPECT_THROW(mqpool::detail::set_log_level("loud"), std::invalid_argument);
}

}  // namespace unit_flags
