#include "support/spawn_self.hpp"

#include <string_view>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

extern char** environ;

namespace rollblock::test {

namespace {

std::string self_exe() {
  std::vector<char> buf(4096);
  auto n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0)
    return "/proc/self/exe";
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

} // namespace

pid_t spawn_self(const std::string& env_name, const std::string& env_value) {
  std::vector<std::string> env;
  for (auto e = environ; *e != nullptr; ++e)
    if (!std::string_view{*e}.starts_with(env_name + "="))
      env.emplace_back(*e);
  env.push_back(env_name + "=" + env_value);
  std::vector<char*> envp;
  for (auto& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  auto exe = self_exe();
  std::vector<char*> argv{exe.data(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null",
                                   O_WRONLY, 0);
  pid_t pid = -1;
  auto rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(),
                        envp.data());
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

} // namespace rollblock::test
