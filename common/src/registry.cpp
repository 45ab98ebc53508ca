#include "mqpool/registry.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <typeinfo>

#include "common/host.hpp"

namespace mqpool::detail {

Registry& Registry::instance() {
  static Registry registry;  // constructed on first use, so static registrations are safe
  return registry;
}

bool Registry::add(std::string name, const void* address, RunChunk run) {
  if (find(name) != nullptr) {
    duplicates_.push_back(name);
    return false;
  }
  entries_.push_back(TaskEntry{std::move(name), address, run});
  return true;
}

void Registry::validate() const {
  if (duplicates_.empty()) return;
  std::string msg = "mqpool: task name registered more than once:";
  for (const auto& d : duplicates_) msg += " '" + d + "'";
  throw std::logic_error(msg + " (each MQPOOL_TASK name must be unique; use MQPOOL_TASK_AS)");
}

const TaskEntry* Registry::find(std::string_view name) const {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const TaskEntry& e) { return e.name == name; });
  return it == entries_.end() ? nullptr : &*it;
}

const std::string* Registry::name_of(const void* address) const {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const TaskEntry& e) { return e.address == address; });
  return it == entries_.end() ? nullptr : &it->name;
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.name);
  return out;
}

namespace {
std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && p ? std::string(p.get()) : std::string(mangled);
}
}  // namespace

WireError describe_current_exception(const std::string& task_name) {
  WireError e;
  e.task = task_name;
  e.worker = host_pid();
  const std::type_info* t = abi::__cxa_current_exception_type();
  e.type = t ? demangle(t->name()) : "unknown";
  try {
    throw;
  } catch (const SerializationError& x) {
    e.code = ErrorCode::serialization;
    e.message = x.what();
  } catch (const std::exception& x) {
    e.message = x.what();
  } catch (...) {
    e.message = "non-standard exception";
  }
  return e;
}

}  // namespace mqpool::detail
