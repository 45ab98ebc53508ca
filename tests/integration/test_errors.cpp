// Error types: TaskError's fields, unknown tasks, Remote handles, a failure that leaves
// the pool usable, and the exception hierarchy.
#include <netinet/in.h>
#include <sys/socket.h>

#include <mqpool/mqpool.hpp>

#include "helpers.hpp"
#include "tasks.hpp"

namespace itest {
namespace {

std::string this_host() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

TEST(TaskError, CarriesTypeMessageTaskAndWorker) {
  mqpool::Pool pool(2);
  try {
    bounded(kLong, "apply", [&] { return pool.apply(fail_with_pid, std::int64_t{1}); });
    FAIL() << "no exception";
  } catch (const mqpool::TaskError& e) {
    EXPECT_EQ(e.remote_type(), "std::runtime_error");
    const std::string pid = e.remote_message();  // the executor's getpid()
    ASSERT_FALSE(pid.empty());
    EXPECT_NE(pid, std::to_string(::getpid())) << "the task ran in the client";
    EXPECT_EQ(e.task_name(), "fail_with_pid");
    EXPECT_EQ(e.worker(), this_host() + ":" + pid);
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << "what() is not one line: " << what;
    EXPECT_NE(what.find(pid), std::string::npos) << "what() lacks the remote message: " << what;
  }
}

TEST(TaskError, DemanglesAUserExceptionType) {
  mqpool::Pool pool(2);
  auto r = pool.apply_async(fail_custom, std::int64_t{3});
  try {
    r.get(kLong);
    FAIL() << "no exception";
  } catch (const mqpool::TaskError& e) {
    EXPECT_EQ(e.remote_type(), "itest::CustomFailure");
    EXPECT_EQ(e.remote_message(), "custom 3");
    EXPECT_EQ(e.task_name(), "fail_custom");
    const std::string what = e.what();
    EXPECT_NE(what.find("itest::CustomFailure"), std::string::npos) << what;
    EXPECT_NE(what.find("custom 3"), std::string::npos) << what;
  }
}

TEST(TaskError, NonStandardExceptionIsATaskError) {
  mqpool::Pool pool(2);
  auto r = pool.apply_async(fail_non_std, std::int64_t{3});
  try {
    r.get(kLong);
    FAIL() << "no exception";
  } catch (const mqpool::TaskError& e) {
    EXPECT_EQ(e.remote_type(), "int");
    EXPECT_EQ(e.task_name(), "fail_non_std");
  }
  EXPECT_EQ(pool.apply_async(square, std::int64_t{5}).get(kLong), 25);
}

TEST(TaskError, IsAnErrorAndARuntimeError) {
  mqpool::Pool pool(2);
  EXPECT_THROW(bounded(kLong, "apply", [&] { return pool.apply(fail_if, 1, 1); }), mqpool::Error);
  EXPECT_THROW(bounded(kLong, "apply", [&] { return pool.apply(fail_if, 1, 1); }),
               std::runtime_error);
}

TEST(TaskError, AFailureLeavesThePoolUsable) {
  mqpool::Pool pool(2);
  std::vector<mqpool::AsyncResult<std::int64_t>> results;
  for (std::int64_t i = 0; i < 40; ++i)
    results.push_back(pool.apply_async(fail_if, i, i % 3 == 0 ? i : -1));
  for (std::int64_t i = 0; i < 40; ++i) {
    if (i % 3 == 0) {
      EXPECT_THROW(results[i].get(kLong), mqpool::TaskError) << i;
    } else {
      EXPECT_EQ(results[i].get(kLong), i);
    }
  }
  // Later submissions of every kind still work.
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{6}); }), 36);
  EXPECT_EQ(bounded(kLong, "map",
                    [&] {
                      return pool.map(square, std::vector<std::int64_t>{1, 2});
                    }),
            (std::vector<std::int64_t>{1, 4}));
  std::vector<std::int64_t> streamed;
  bounded(kLong, "imap", [&] {
    for (auto v : pool.imap(square, std::vector<std::int64_t>{3, 4})) streamed.push_back(v);
  });
  EXPECT_EQ(streamed, (std::vector<std::int64_t>{9, 16}));
}

TEST(UnknownTask, UnregisteredFunctionThrowsAtSubmission) {
  mqpool::Pool pool(2);
  const std::vector<std::int64_t> in{1, 2};
  EXPECT_THROW(pool.apply(not_registered, std::int64_t{1}), mqpool::UnknownTaskError);
  EXPECT_THROW(pool.apply_async(not_registered, std::int64_t{1}), mqpool::UnknownTaskError);
  EXPECT_THROW(pool.map(not_registered, in), mqpool::UnknownTaskError);
  EXPECT_THROW(pool.map_async(not_registered, in, mqpool::MapOptions<std::int64_t>{}),
               mqpool::UnknownTaskError);
  EXPECT_THROW(pool.imap(not_registered, in), mqpool::UnknownTaskError);
  EXPECT_THROW(pool.imap_unordered(not_registered, in), mqpool::UnknownTaskError);
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{2}); }), 4);
}

TEST(UnknownTask, UnknownRemoteNameFailsTheTask) {
  mqpool::Pool pool(2);
  const mqpool::Remote<std::int64_t(std::int64_t)> missing{"no.such.task"};
  auto r = pool.apply_async(missing, std::int64_t{1});  // the client cannot know: no throw here
  try {
    r.get(kLong);
    FAIL() << "no exception";
  } catch (const mqpool::UnknownTaskError& e) {
    EXPECT_NE(std::string(e.what()).find("no.such.task"), std::string::npos) << e.what();
  }
  EXPECT_THROW(bounded(kLong, "apply", [&] { return pool.apply(missing, std::int64_t{1}); }),
               mqpool::UnknownTaskError);
  EXPECT_THROW(bounded(kLong, "map",
                       [&] {
                         return pool.map(missing, std::vector<std::int64_t>{1, 2});
                       }),
               mqpool::UnknownTaskError);
  // The pool still serves known tasks.
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{2}); }), 4);
}

TEST(Remote, CallsARegisteredTaskByName) {
  mqpool::Pool pool(2);
  const mqpool::Remote<std::int64_t(std::int64_t)> square_remote{"square"};
  const mqpool::Remote<int(int, int)> add_remote{"tests.add"};
  const mqpool::Remote<void()> noop_remote{"noop"};
  EXPECT_EQ(square_remote.name(), "square");
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square_remote, std::int64_t{5}); }),
            25);
  EXPECT_EQ(pool.apply_async(add_remote, 2, 40).get(kLong), 42);
  bounded(kLong, "apply(void remote)", [&] { pool.apply(noop_remote); });
  EXPECT_EQ(bounded(kLong, "map",
                    [&] {
                      return pool.map(square_remote, std::vector<std::int64_t>{1, 2, 3});
                    }),
            (std::vector<std::int64_t>{1, 4, 9}));
  std::vector<std::tuple<int, int>> pairs{{1, 1}, {2, 2}};
  EXPECT_EQ(bounded(kLong, "starmap", [&] { return pool.starmap(add_remote, pairs); }),
            (std::vector<int>{2, 4}));
  std::vector<std::int64_t> streamed;
  bounded(kLong, "imap", [&] {
    for (auto v : pool.imap(square_remote, std::vector<std::int64_t>{7})) streamed.push_back(v);
  });
  EXPECT_EQ(streamed, (std::vector<std::int64_t>{49}));
}

TEST(Remote, ArgumentsThatDoNotDecodeRaiseSerializationError) {
  mqpool::Pool pool(2);
  // "square" takes an integer; a string argument cannot be decoded on the worker.
  const mqpool::Remote<std::int64_t(std::string)> wrong{"square"};
  EXPECT_THROW(pool.apply_async(wrong, std::string("seven")).get(kLong),
               mqpool::SerializationError);
  // A result that the client cannot decode as the declared type.
  const mqpool::Remote<std::string(std::int64_t)> wrong_result{"square"};
  EXPECT_THROW(pool.apply_async(wrong_result, std::int64_t{3}).get(kLong),
               mqpool::SerializationError);
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{2}); }), 4);
}

// The message of the SerializationError that `fn` throws ("" if it throws none).
template <class F>
std::string serialization_message(F fn) {
  try {
    fn();
  } catch (const mqpool::SerializationError& e) {
    return e.what();
  }
  return "";
}

TEST(Remote, AWrongResultTypeNamesTheTaskAndBothTypes) {
  mqpool::Pool pool(2);
  // "square" returns an integer; the handle claims a string.
  const mqpool::Remote<std::string(std::int64_t)> wrong{"square"};
  const std::string expected =
      "task 'square' returned a msgpack integer, which does not convert to std::string";
  EXPECT_EQ(serialization_message([&] { pool.apply_async(wrong, std::int64_t{3}).get(kLong); }),
            expected);
  // map's fast path for integer results does not apply to strings: the general path,
  // where the error is made, runs for every task; the lowest index is reported.
  EXPECT_EQ(serialization_message([&] {
              bounded(kLong, "map", [&] { pool.map(wrong, std::vector<std::int64_t>{1, 2, 3}); });
            }),
            expected);
  EXPECT_EQ(serialization_message([&] {
              bounded(kLong, "imap", [&] {
                for (const auto& v : pool.imap(wrong, std::vector<std::int64_t>{4})) (void)v;
              });
            }),
            expected);
  // A container result type is named as written, not as the compiler spells it.
  const mqpool::Remote<std::vector<std::string>(std::int64_t)> wrong_vector{"square"};
  EXPECT_EQ(
      serialization_message([&] { pool.apply_async(wrong_vector, std::int64_t{3}).get(kLong); }),
      "task 'square' returned a msgpack integer, which does not convert to "
      "std::vector<std::string>");
  // An integer result type takes the fast path first; what does not fit falls back to
  // the general one, and says so in the same words.
  const mqpool::Remote<std::uint8_t(std::int64_t)> too_small{"square"};
  EXPECT_EQ(
      serialization_message([&] { pool.apply_async(too_small, std::int64_t{100}).get(kLong); }),
      "task 'square' returned a msgpack integer, which does not convert to unsigned char");
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{2}); }), 4);
}

TEST(Remote, WrongArgumentTypesNameTheTaskAndTheParameters) {
  mqpool::Pool pool(2);
  const mqpool::Remote<std::int64_t(std::string)> wrong{"square"};
  const std::string what =
      serialization_message([&] { pool.apply_async(wrong, std::string("seven")).get(kLong); });
  // The integer's name is the compiler's ("long int" from GCC, "long" from Clang).
  EXPECT_TRUE(what.starts_with("task 'square' was called with a msgpack array of 1 (string), "
                               "which does not convert to its parameters std::tuple<") &&
              (what.ends_with("long>") || what.ends_with("long int>")))
      << what;
}

// A TCP port on loopback that refuses connections: bound (so nobody else takes it) but
// not listening. The kernel assigns it; nothing is hard-coded.
class RefusingPort {
 public:
  RefusingPort() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

TEST(ConnectionError, UnreachableBrokerIsReported) {
  RefusingPort refusing;
  ASSERT_NE(refusing.port(), 0);
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(refusing.port());
  // Either the constructor or the first call reports it; neither may hang.
  bounded(std::chrono::seconds(90), "a pool on an unreachable broker", [&] {
    try {
      mqpool::Pool pool(mqpool::PoolOptions{.connect = endpoint,
                                            .connect_timeout = std::chrono::milliseconds(500)});
      pool.apply_async(square, std::int64_t{2}).get(std::chrono::seconds(80));
      ADD_FAILURE() << "a task ran without a broker";
    } catch (const mqpool::ConnectionError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find('\n'), std::string::npos);
      EXPECT_NE(what.find(endpoint), std::string::npos) << what;
      EXPECT_NE(what.find("500 ms"), std::string::npos) << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected ConnectionError, got: " << e.what();
    }
  });
}

}  // namespace
}  // namespace itest
