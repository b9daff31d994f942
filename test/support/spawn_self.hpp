#pragma once

#include <string>

#include <sys/types.h>

namespace rollblock::test {

/// Starts the running test binary again (fork+exec via posix_spawn) with
/// `env_name=env_value` added to its environment, which puts it into a
/// helper mode of its own (holding a lock, writing until killed, ...). Its
/// stdout goes to /dev/null. Returns the child's pid, or -1.
pid_t spawn_self(const std::string& env_name, const std::string& env_value);

} // namespace rollblock::test
