// A separate executable whose process-wide registry holds one name twice, registered
// through the macros as a user would; validate() must refuse it and name the duplicate.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "mqpool/registry.hpp"

namespace unit_dup {
int first(int x) { return x; }
int second(int x) { return -x; }
int unique(int x) { return x + 1; }
}  // namespace unit_dup

MQPOOL_TASK_AS(unit_dup::first, "dup.same_name");
MQPOOL_TASK_AS(unit_dup::second, "dup.same_name");
MQPOOL_TASK_AS(unit_dup::unique, "dup.unique");

namespace {

using mqpool::detail::Registry;

TEST(RegistryDuplicate, ValidateThrowsLogicErrorNamingTheDuplicate) {
  try {
    Registry::instance().validate();
    FAIL() << "validate() accepted a name registered twice";
  } catch (const std::logic_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'dup.same_name'"), std::string::npos) << what;
    EXPECT_EQ(what.find("dup.unique"), std::string::npos) << what;
  }
}

TEST(RegistryDuplicate, TheFirstRegistrationStaysInForce) {
  const auto* e = Registry::instance().find("dup.same_name");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->address, reinterpret_cast<const void*>(&unit_dup::first));
  EXPECT_EQ(Registry::instance().name_of(reinterpret_cast<const void*>(&unit_dup::second)),
            nullptr);
  EXPECT_NE(Registry::instance().find("dup.unique"), nullptr);
}

}  // namespace
