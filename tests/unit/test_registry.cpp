// The task registry: MQPOOL_TASK / MQPOOL_TASK_AS, lookups, duplicate names (on a local
// Registry, so the process-wide one stays clean), and run_chunk through an entry's `run`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "common/host.hpp"
#include "mqpool/registry.hpp"

namespace unit_registry {

struct BadInput : std::exception {
  const char* what() const noexcept override { return "bad input in unit test"; }
};

int square(int x) { return x * x; }

std::string repeat(std::string s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

int checked_sqrt(int x) {
  if (x < 0) throw std::runtime_error("negative input " + std::to_string(x));
  int r = 0;
  while ((r + 1) * (r + 1) <= x) ++r;
  return r;
}

int picky(int x) {
  if (x == 13) throw BadInput();
  if (x == 7) throw 7;  // not a std::exception
  return x;
}

int void_calls = 0;
void touch(int n) { void_calls += n; }

int add3(int a, int b, int c) noexcept { return a + b + c; }

std::vector<int> range(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(i);
  return v;
}

int never_registered(int x) { return x; }

}  // namespace unit_registry

MQPOOL_TASK(unit_registry::square);
MQPOOL_TASK_AS(unit_registry::repeat, "text.repeat");
MQPOOL_TASK_AS(unit_registry::checked_sqrt, "math.checked_sqrt");
MQPOOL_TASK_AS(unit_registry::picky, "picky");
MQPOOL_TASK_AS(unit_registry::touch, "touch");
MQPOOL_TASK_AS(unit_registry::add3, "add3");
MQPOOL_TASK_AS(unit_registry::range, "range");

namespace {

using mqpool::ErrorCode;
using mqpool::SerializationError;
using mqpool::WireError;
using mqpool::detail::ChunkOutput;
using mqpool::detail::convert;
using mqpool::detail::Packer;
using mqpool::detail::Reader;
using mqpool::detail::Registry;
using mqpool::detail::TaskEntry;
using namespace unit_registry;

const TaskEntry& entry(const char* name) {
  const TaskEntry* e = Registry::instance().find(name);
  if (e == nullptr) throw std::runtime_error(std::string("not registered: ") + name);
  return *e;
}

// The argument tuples of one chunk, concatenated as the client sends them.
template <class... Tuples>
std::string args_of(const Tuples&... tuples) {
  mqpool::detail::Buffer buf;
  Packer packer(buf);
  (packer.pack(tuples), ...);
  return std::string(buf.data(), buf.size());
}

ChunkOutput run(const char* name, const std::string& args, std::uint32_t count) {
  Reader reader(args.data(), args.size());
  ChunkOutput out;
  entry(name).run(reader, count, out, name);
  return out;
}

// The values stream of a chunk output, one object per task, each converted to T.
template <class T>
std::vector<std::optional<T>> values_of(const ChunkOutput& out, std::uint32_t count) {
  Reader reader(out.values.data(), out.values.size());
  std::vector<std::optional<T>> v;
  for (std::uint32_t i = 0; i < count; ++i) {
    const msgpack::object& o = reader.next();
    v.push_back(o.is_nil() ? std::nullopt : std::optional<T>(convert<T>(o)));
  }
  reader.expect_end();
  return v;
}

std::string this_worker() { return mqpool::detail::hostname() + ":" + std::to_string(getpid()); }

// --- registration and lookup ---------------------------------------------------------------

TEST(Registry, MacrosRegisterUnderTheSpellingOrTheGivenName) {
  const auto& reg = Registry::instance();
  ASSERT_NE(reg.find("unit_registry::square"), nullptr);  // MQPOOL_TASK: the spelling
  ASSERT_NE(reg.find("text.repeat"), nullptr);
  EXPECT_EQ(reg.find("repeat"), nullptr);  // MQPOOL_TASK_AS: only the given name
  EXPECT_EQ(reg.find("nope"), nullptr);
  EXPECT_EQ(reg.find(""), nullptr);
  EXPECT_EQ(reg.find("text.repea"), nullptr);  // no prefix matching
  const auto names = reg.names();
  for (const char* n : {"unit_registry::square", "text.repeat", "math.checked_sqrt", "touch"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  EXPECT_NO_THROW(reg.validate());  // no duplicates in this executable
}

TEST(Registry, EntriesKnowTheirFunctionAndNameOfFindsItBack) {
  const auto& reg = Registry::instance();
  const TaskEntry* e = reg.find("text.repeat");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "text.repeat");
  EXPECT_EQ(e->address, reinterpret_cast<const void*>(&repeat));
  EXPECT_NE(e->run, nullptr);
  const std::string* name = reg.name_of(reinterpret_cast<const void*>(&checked_sqrt));
  ASSERT_NE(name, nullptr);
  EXPECT_EQ(*name, "math.checked_sqrt");
  EXPECT_EQ(reg.name_of(reinterpret_cast<const void*>(&never_registered)), nullptr);
  EXPECT_EQ(reg.name_of(nullptr), nullptr);
}

void fake_run(Reader&, std::uint32_t, ChunkOutput&, const std::string&) {}
void other_run(Reader&, std::uint32_t, ChunkOutput&, const std::string&) {}

TEST(Registry, DuplicateNameMakesValidateThrowNamingIt) {
  Registry reg;  // a local table: the process-wide one must stay valid for other tests
  static const int a = 0, b = 0, c = 0;
  EXPECT_TRUE(reg.add("alpha", &a, &fake_run));
  EXPECT_TRUE(reg.add("beta", &b, &fake_run));
  EXPECT_NO_THROW(reg.validate());
  EXPECT_FALSE(reg.add("alpha", &c, &other_run));
  try {
    reg.validate();
    FAIL() << "validate() accepted a duplicate name";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("'alpha'"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("'beta'"), std::string::npos) << e.what();
  }
  // The first registration stays in force.
  ASSERT_NE(reg.find("alpha"), nullptr);
  EXPECT_EQ(reg.find("alpha")->address, &a);
  EXPECT_EQ(reg.find("alpha")->run, &fake_run);
  EXPECT_EQ(reg.names(), (std::vector<std::string>{"alpha", "beta"}));
}

TEST(Registry, EveryDuplicateIsNamed) {
  Registry reg;
  static const int a = 0;
  reg.add("x", &a, &fake_run);
  reg.add("y", &a, &fake_run);
  reg.add("x", &a, &fake_run);
  reg.add("y", &a, &fake_run);
  try {
    reg.validate();
    FAIL() << "validate() accepted duplicate names";
  } catch (const std::logic_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'x'"), std::string::npos) << what;
    EXPECT_NE(what.find("'y'"), std::string::npos) << what;
  }
}

// --- run_chunk ----------------------------------------------------------------------------------

TEST(RunChunk, ResultsArePackedInOrder) {
  const auto args =
      args_of(std::make_tuple(3), std::make_tuple(-4), std::make_tuple(0), std::make_tuple(46340));
  const ChunkOutput out = run("unit_registry::square", args, 4);
  EXPECT_TRUE(out.errors.empty());
  EXPECT_EQ(values_of<int>(out, 4), (std::vector<std::optional<int>>{9, 16, 0, 46340 * 46340}));
}

TEST(RunChunk, SeveralArgumentsAndCompoundResults) {
  const auto out =
      run("text.repeat",
          args_of(std::make_tuple(std::string("ab"), 3), std::make_tuple(std::string("x"), 0)), 2);
  EXPECT_TRUE(out.errors.empty());
  EXPECT_EQ(values_of<std::string>(out, 2),
            (std::vector<std::optional<std::string>>{"ababab", ""}));

  const auto sums = run("add3", args_of(std::make_tuple(1, 2, 3)), 1);  // a noexcept function
  EXPECT_EQ(values_of<int>(sums, 1), (std::vector<std::optional<int>>{6}));

  const auto ranges = run("range", args_of(std::make_tuple(3), std::make_tuple(0)), 2);
  EXPECT_EQ(values_of<std::vector<int>>(ranges, 2),
            (std::vector<std::optional<std::vector<int>>>{std::vector<int>{0, 1, 2},
                                                          std::vector<int>{}}));
}

TEST(RunChunk, AThrowingTaskIsAnErrorAtItsIndexAndTheOthersStillRun) {
  const auto args = args_of(std::make_tuple(16), std::make_tuple(-2), std::make_tuple(9),
                            std::make_tuple(-5), std::make_tuple(1));
  const ChunkOutput out = run("math.checked_sqrt", args, 5);
  EXPECT_EQ(values_of<int>(out, 5),
            (std::vector<std::optional<int>>{4, std::nullopt, 3, std::nullopt, 1}));
  ASSERT_EQ(out.errors.size(), 2u);
  EXPECT_EQ(out.errors[0].first, 1u);
  EXPECT_EQ(out.errors[1].first, 3u);
  const WireError& e = out.errors[0].second;
  EXPECT_EQ(e.code, ErrorCode::task);
  EXPECT_EQ(e.type, "std::runtime_error");
  EXPECT_EQ(e.message, "negative input -2");
  EXPECT_EQ(e.task, "math.checked_sqrt");
  EXPECT_EQ(e.worker, this_worker());
  EXPECT_EQ(out.errors[1].second.message, "negative input -5");
}

// A long chunk of f(int) -> int takes the block-at-a-time path (registry.hpp,
// run_integers): every width of argument, a throw in a later block, and an argument that
// is no integer, after which the general path fails the rest as it always has.
TEST(RunChunk, ALongChunkOfIntegersRunsEveryTaskInOrder) {
  mqpool::detail::Buffer buf;
  Packer packer(buf);
  const std::uint32_t n = 700;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i == 300)
      packer.pack(std::make_tuple(-1));  // checked_sqrt throws
    else if (i == 650)
      packer.pack(std::make_tuple(std::string("x")));
    else
      packer.pack(std::make_tuple(static_cast<int>(i * i * 4000 % 2000000000)));
  }
  const ChunkOutput out = run("math.checked_sqrt", std::string(buf.data(), buf.size()), n);
  const auto values = values_of<int>(out, n);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i == 300 || i >= 650) {
      EXPECT_FALSE(values[i].has_value()) << i;
    } else {
      ASSERT_TRUE(values[i].has_value()) << i;
      EXPECT_EQ(*values[i], checked_sqrt(static_cast<int>(i * i * 4000 % 2000000000))) << i;
    }
  }
  ASSERT_EQ(out.errors.size(), 1u + (n - 650));
  EXPECT_EQ(out.errors[0].first, 300u);
  EXPECT_EQ(out.errors[0].second.message, "negative input -1");
  EXPECT_EQ(out.errors[1].first, 650u);
  EXPECT_EQ(out.errors[1].second.code, ErrorCode::serialization);
  EXPECT_EQ(out.errors.back().first, n - 1);
}

TEST(RunChunk, CustomAndNonStandardExceptionsAreDescribed) {
  const auto args =
      args_of(std::make_tuple(1), std::make_tuple(13), std::make_tuple(7), std::make_tuple(2));
  const ChunkOutput out = run("picky", args, 4);
  EXPECT_EQ(values_of<int>(out, 4),
            (std::vector<std::optional<int>>{1, std::nullopt, std::nullopt, 2}));
  ASSERT_EQ(out.errors.size(), 2u);
  EXPECT_EQ(out.errors[0].first, 1u);
  EXPECT_EQ(out.errors[0].second.type, "unit_registry::BadInput");  // demangled
  EXPECT_EQ(out.errors[0].second.message, "bad input in unit test");
  EXPECT_EQ(out.errors[0].second.code, ErrorCode::task);
  EXPECT_EQ(out.errors[1].first, 2u);
  EXPECT_EQ(out.errors[1].second.type, "int");
  EXPECT_EQ(out.errors[1].second.message, "non-standard exception");
  EXPECT_EQ(out.errors[1].second.task, "picky");
  EXPECT_EQ(out.errors[1].second.worker, this_worker());
}

TEST(RunChunk, MalformedArgumentBytesFailTheRemainingTasksAsSerializationErrors) {
  std::string args = args_of(std::make_tuple(2), std::make_tuple(3));
  args += '\xc1';  // never valid msgpack
  args += args_of(std::make_tuple(5));
  const ChunkOutput out = run("unit_registry::square", args, 5);
  EXPECT_EQ(values_of<int>(out, 5),
            (std::vector<std::optional<int>>{4, 9, std::nullopt, std::nullopt, std::nullopt}));
  ASSERT_EQ(out.errors.size(), 3u);
  for (std::uint32_t k = 0; k < 3; ++k) {
    EXPECT_EQ(out.errors[k].first, 2 + k);
    EXPECT_EQ(out.errors[k].second.code, ErrorCode::serialization);
    EXPECT_EQ(out.errors[k].second.type, "mqpool::SerializationError");
    EXPECT_EQ(out.errors[k].second.task, "unit_registry::square");
    EXPECT_FALSE(out.errors[k].second.message.empty());
  }
}

TEST(RunChunk, FewerArgumentObjectsThanTasksFailsTheMissingOnes) {
  const ChunkOutput out = run("unit_registry::square", args_of(std::make_tuple(6)), 3);
  EXPECT_EQ(values_of<int>(out, 3),
            (std::vector<std::optional<int>>{36, std::nullopt, std::nullopt}));
  ASSERT_EQ(out.errors.size(), 2u);
  EXPECT_EQ(out.errors[0].first, 1u);
  EXPECT_EQ(out.errors[1].first, 2u);
  EXPECT_EQ(out.errors[0].second.code, ErrorCode::serialization);
}

TEST(RunChunk, ArgumentsOfTheWrongTypeAreASerializationError) {
  const ChunkOutput out =
      run("unit_registry::square", args_of(std::make_tuple(std::string("nine"))), 1);
  EXPECT_EQ(values_of<int>(out, 1), (std::vector<std::optional<int>>{std::nullopt}));
  ASSERT_EQ(out.errors.size(), 1u);
  EXPECT_EQ(out.errors[0].first, 0u);
  EXPECT_EQ(out.errors[0].second.code, ErrorCode::serialization);
}

TEST(RunChunk, VoidTasksPackNilAndRun) {
  void_calls = 0;
  const ChunkOutput out =
      run("touch", args_of(std::make_tuple(1), std::make_tuple(10), std::make_tuple(100)), 3);
  EXPECT_TRUE(out.errors.empty());
  EXPECT_EQ(void_calls, 111);
  Reader reader(out.values.data(), out.values.size());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(reader.next().is_nil()) << i;
  EXPECT_NO_THROW(reader.expect_end());
}

TEST(RunChunk, AppendsToAnExistingOutput) {
  Reader first_args(nullptr, 0);
  ChunkOutput out;
  const std::string a = args_of(std::make_tuple(2));
  const std::string b = args_of(std::make_tuple(-1));
  Reader ra(a.data(), a.size());
  Reader rb(b.data(), b.size());
  entry("math.checked_sqrt").run(ra, 1, out, "math.checked_sqrt");
  entry("math.checked_sqrt").run(rb, 1, out, "math.checked_sqrt");
  EXPECT_EQ(values_of<int>(out, 2), (std::vector<std::optional<int>>{1, std::nullopt}));
  ASSERT_EQ(out.errors.size(), 1u);
  EXPECT_EQ(out.errors[0].first, 0u);  // the index within its own chunk
  entry("math.checked_sqrt").run(first_args, 0, out, "math.checked_sqrt");  // count 0: nothing
  EXPECT_EQ(values_of<int>(out, 2).size(), 2u);
}

TEST(DescribeCurrentException, SerializationErrorsKeepTheirCode) {
  try {
    throw SerializationError("cannot decode value: x");
  } catch (...) {
    const WireError e = mqpool::detail::describe_current_exception("t");
    EXPECT_EQ(e.code, ErrorCode::serialization);
    EXPECT_EQ(e.type, "mqpool::SerializationError");
    EXPECT_EQ(e.message, "cannot decode value: x");
    EXPECT_EQ(e.task, "t");
    EXPECT_EQ(e.worker, this_worker());
  }
}

}  // namespace
