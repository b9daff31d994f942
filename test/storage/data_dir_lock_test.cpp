#include "rollblock/storage/data_dir_lock.hpp"

#include "rollblock/messages/error.hpp"
#include "support/spawn_self.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

using rollblock::ec;
using rollblock::storage::data_dir_lock;

namespace {

/// Selects the helper mode of this binary: hold the lock on this directory
/// until killed (see holder_mode at the end).
constexpr const char* holder_env = "ROLLBLOCK_TEST_LOCK_HOLDER_DIR";

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in{file, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}


} // namespace

TEST(data_dir_lock, acquire_creates_the_directory_and_writes_the_pid) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "nested" / "data";
  auto lock = data_dir_lock::acquire(dir);
  ASSERT_TRUE(lock) << rollblock::describe(lock.error());
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  EXPECT_EQ((*lock)->dir(), dir);
  EXPECT_EQ(read_file(dir / "LOCK"), std::to_string(::getpid()) + "\n");
}

TEST(data_dir_lock, second_acquire_in_the_same_process_fails) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  auto first = data_dir_lock::acquire(dir);
  ASSERT_TRUE(first) << rollblock::describe(first.error());
  auto second = data_dir_lock::acquire(dir);
  ASSERT_FALSE(second);
  EXPECT_EQ(rollblock::code_of(second.error()), ec::data_dir_locked);
  auto msg = rollblock::message_of(second.error());
  EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("pid " + std::to_string(::getpid())), std::string::npos)
    << msg;
  // The failed attempt leaves the holder's pid in place.
  EXPECT_EQ(read_file(dir / "LOCK"), std::to_string(::getpid()) + "\n");
}

TEST(data_dir_lock, release_allows_reacquire) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  auto first = data_dir_lock::acquire(dir);
  ASSERT_TRUE(first) << rollblock::describe(first.error());
  first->reset();
  auto second = data_dir_lock::acquire(dir);
  ASSERT_TRUE(second) << rollblock::describe(second.error());
  EXPECT_EQ(read_file(dir / "LOCK"), std::to_string(::getpid()) + "\n");
}

TEST(data_dir_lock, stale_lock_file_is_taken_over_and_overwritten) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  std::filesystem::create_directories(dir);
  {
    std::ofstream out{dir / "LOCK", std::ios::binary};
    out << "123456789012345\nleftover text from an old holder\n";
  }
  auto lock = data_dir_lock::acquire(dir);
  ASSERT_TRUE(lock) << rollblock::describe(lock.error());
  EXPECT_EQ(read_file(dir / "LOCK"), std::to_string(::getpid()) + "\n");
}

TEST(data_dir_lock, path_that_is_a_file_gives_io_error) {
  rollblock::test::temp_dir tmp;
  auto file = tmp.path() / "not-a-dir";
  { std::ofstream out{file}; }
  auto lock = data_dir_lock::acquire(file);
  ASSERT_FALSE(lock);
  EXPECT_EQ(rollblock::code_of(lock.error()), ec::io_error);
  auto msg = rollblock::message_of(lock.error());
  EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
}

TEST(data_dir_lock, lock_held_by_another_process_until_it_is_killed) {
  rollblock::test::temp_dir tmp;
  auto dir = tmp.path() / "data";
  auto pid = rollblock::test::spawn_self(holder_env, dir.string());
  ASSERT_GT(pid, 0) << "posix_spawn failed";
  // The child writes its pid into LOCK once it holds the lock.
  auto expected = std::to_string(pid) + "\n";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  bool child_died = false;
  while (read_file(dir / "LOCK") != expected) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      child_died = true;
      break;
    }
    if (std::chrono::steady_clock::now() > deadline)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
  if (child_died || read_file(dir / "LOCK") != expected) {
    if (!child_died) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    FAIL() << "the child never took the lock";
  }
  auto blocked = data_dir_lock::acquire(dir);
  ASSERT_FALSE(blocked);
  EXPECT_EQ(rollblock::code_of(blocked.error()), ec::data_dir_locked);
  auto msg = rollblock::message_of(blocked.error());
  EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("pid " + std::to_string(pid) + ")"), std::string::npos)
    << msg;
  // The kernel drops a flock when its holder dies, even by SIGKILL.
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  auto lock = data_dir_lock::acquire(dir);
  ASSERT_TRUE(lock) << rollblock::describe(lock.error());
  EXPECT_EQ(read_file(dir / "LOCK"), std::to_string(::getpid()) + "\n");
}

// Helper mode, started by LockHeldByAnotherProcessUntilItIsKilled: when the
// environment names a directory, this binary takes the lock on it and holds
// it until killed, before main() (and gtest) ever run. It is selected during
// static initialization so that it is no test case of its own.
namespace {

const bool holder_mode = [] {
  if (auto dir = std::getenv(holder_env)) {
    auto lock = data_dir_lock::acquire(dir);
    if (!lock)
      std::_Exit(2);
    for (;;)
      ::pause();
  }
  return false;
}();

} // namespace
