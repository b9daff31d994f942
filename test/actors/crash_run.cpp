#include "actors/crash_run.hpp"

#include "rollblock/actors/blocking_store.hpp"
#include "rollblock/messages/error.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace rollblock::crash {

namespace {

using clock_type = std::chrono::steady_clock;

/// One line the child wrote.
struct report {
  action::kind_t kind;
  block_id height;
  block_id durable;
};

std::string read_text(const std::string& path) {
  std::ifstream in{path};
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

/// A running crash_writer, its stdout read through a pipe.
class child {
public:
  child(const std::vector<std::string>& args, const std::string& stderr_path) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe2 failed");
    read_fd_ = fds[0];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO,
                                     stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> argv;
    for (auto& arg : args)
      argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    auto rc = ::posix_spawn(&pid_, args[0].c_str(), &actions, nullptr,
                            argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(read_fd_);
      throw std::runtime_error(std::string{"posix_spawn failed: "}
                               + std::strerror(rc));
    }
    ::fcntl(read_fd_, F_SETFL, ::fcntl(read_fd_, F_GETFL) | O_NONBLOCK);
  }

  ~child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
    ::close(read_fd_);
  }

  child(const child&) = delete;
  child& operator=(const child&) = delete;

  /// Reads what the child wrote until `deadline`; returns false when the
  /// pipe closed (the child is gone).
  bool read_until(clock_type::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - clock_type::now());
      if (left.count() <= 0)
        return true;
      pollfd p{read_fd_, POLLIN, 0};
      auto n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
      if (n < 0 && errno != EINTR)
        return false;
      if (n > 0 && !drain())
        return false;
    }
  }

  /// SIGKILLs the child, reaps it and reads the rest of the pipe. Returns
  /// the wait status.
  int kill() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    while (drain()) {
      // Until EOF: the child is gone, so the pipe has its last bytes.
    }
    return status;
  }

  const std::string& output() const {
    return out_;
  }

private:
  /// Reads what is available; false at EOF.
  bool drain() {
    char buf[4096];
    for (;;) {
      auto n = ::read(read_fd_, buf, sizeof buf);
      if (n > 0) {
        out_.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0)
        return false;
      if (errno == EINTR)
        continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }

  pid_t pid_ = -1;
  int read_fd_ = -1;
  std::string out_;
};

/// Parses the child's complete lines (a torn last line is ignored: the
/// child died while writing it, so that step is the one in progress).
std::vector<report> parse(const std::string& text) {
  std::vector<report> result;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof())
      break; // no newline: torn
    std::istringstream fields{line};
    report r{action::apply, 0, 0};
    std::string first;
    fields >> first;
    if (first == "revert") {
      r.kind = action::revert;
      fields >> r.height;
    } else {
      r.height = std::stoull(first);
    }
    fields >> r.durable;
    if (!fields)
      throw std::runtime_error("bad line from crash_writer: " + line);
    result.push_back(r);
  }
  return result;
}

} // namespace

tally& tally::operator+=(const tally& other) {
  kills += other.kills;
  acknowledged_steps += other.acknowledged_steps;
  blocks_checked += other.blocks_checked;
  lost += other.lost;
  rolled_back += other.rolled_back;
  reverted += other.reverted;
  return *this;
}

std::string to_string(const tally& x) {
  std::ostringstream out;
  out << x.kills << " kills, " << x.blocks_checked << " blocks checked, "
      << x.lost << " lost acknowledged blocks (" << x.acknowledged_steps
      << " acknowledged steps, " << x.rolled_back
      << " undurable blocks rolled back, " << x.reverted
      << " blocks removed by a revert in progress)";
  return out.str();
}

crash_run::crash_run(std::uint64_t seed, std::size_t width,
                     std::size_t memory_budget)
  : seed_(seed), rng_(seed), width_(width), data_(dir_.sub("data")),
    log_(dir_.sub("writer.log")), budget_(memory_budget) {
  for (std::uint64_t i = 0; i < key_space; ++i)
    keys_.push_back(key_of(i, width_));
}

void crash_run::cycle(const std::string& mode) {
  ++counts_.kills;
  auto child_seed = mix(seed_ + counts_.kills);
  SCOPED_TRACE("seed " + std::to_string(seed_) + ", kill "
               + std::to_string(counts_.kills) + " (" + mode
               + ", child seed " + std::to_string(child_seed)
               + ", starting at " + std::to_string(start_.height) + ")");
  // The plan the child will follow from here, as states.
  auto fresh = start_.height == 0 && start_.state.empty();
  plan steps{child_seed, start_.height, fresh};
  // Now and then early, while the child opens and recovers the store.
  auto run_for = std::chrono::milliseconds{
    std::uniform_int_distribution<int>(3, rng_() % 4 == 0 ? 40 : 300)(rng_)};
  std::string output;
  {
    child writer{{CRASH_WRITER, data_, mode, std::to_string(child_seed),
                  std::to_string(width_), std::to_string(budget_)},
                 log_};
    auto alive = writer.read_until(clock_type::now() + run_for);
    auto status = writer.kill();
    output = writer.output();
    ASSERT_TRUE(alive && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the writer ended before it was killed (status " << status
      << "); its log:\n"
      << read_text(log_);
  }
  auto lines = parse(output);
  counts_.acknowledged_steps += lines.size();
  // Replay: states[i] is the state after i steps; the step in progress
  // when the child died is lines.size().
  std::vector<model_state> states{start_};
  std::vector<action> actions;
  for (std::size_t i = 0; i <= lines.size(); ++i) {
    auto a = steps.next();
    actions.push_back(a);
    model_state next;
    if (a.kind == action::apply) {
      next.height = a.height;
      next.state = states.back().state;
      for (auto& op : block_ops(child_seed, a.height, width_)) {
        if (op.v.empty())
          next.state.erase(op.k);
        else
          next.state[op.k] = std::make_shared<const value>(op.v);
      }
    } else {
      // The state at the target: the newest state at or below it since
      // the last revert, or before it (heights only rise in between).
      next.height = a.height;
      const model_state* below = nullptr;
      for (auto& s : states)
        if (s.height <= a.height)
          below = &s;
      EXPECT_NE(below, nullptr);
      if (below)
        next.state = below->state;
    }
    if (i < lines.size()) {
      ASSERT_EQ(lines[i].kind, a.kind) << "line " << i;
      ASSERT_EQ(lines[i].height, a.height)
        << "line " << i << ": the writer left its plan";
      ASSERT_LE(lines[i].durable,
                a.kind == action::revert ? a.height : lines[i].height);
    }
    states.push_back(std::move(next));
  }
  // What the child saw acknowledged: the heights of the acknowledged blocks
  // no acknowledged revert removed since.
  auto in_progress = actions.back();
  block_id last_acked = start_.height; // the start state is durable
  block_id last_durable = start_.height;
  std::size_t since_revert = 0; // the oldest state still possible
  std::vector<block_id> acked_blocks;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    last_acked = lines[i].height;
    last_durable = lines[i].durable;
    if (lines[i].kind == action::revert) {
      since_revert = i + 1;
      std::erase_if(acked_blocks,
                    [&](block_id h) { return h > lines[i].height; });
    } else {
      acked_blocks.push_back(lines[i].height);
    }
  }
  block_id highest = 0; // the last height the child applied
  for (std::size_t i = since_revert; i < states.size(); ++i)
    highest = std::max(highest, states[i].height);
  // Recover.
  auto opts = options(data_, width_, budget_);
  auto opened = blocking_store::open(opts);
  ASSERT_TRUE(opened) << "reopening after kill -9: "
                      << describe(opened.error());
  auto& store = **opened;
  auto h = store.heights();
  auto recovered = h.applied;
  EXPECT_EQ(h.durable, recovered);
  // The replayed blocks wait for a checkpoint like any held block.
  EXPECT_LE(h.current, recovered);
  auto reverting = in_progress.kind == action::revert
                   && recovered == in_progress.height;
  // Count the blocks first, so that the summary shows what a failure lost.
  std::uint64_t lost = 0;
  for (auto height : acked_blocks) {
    ++counts_.blocks_checked;
    if (height <= recovered)
      continue;
    if (reverting)
      ++counts_.reverted;
    else if (mode == "sync" || height <= last_durable)
      ++lost;
    else
      ++counts_.rolled_back;
  }
  counts_.lost += lost;
  EXPECT_EQ(lost, 0u) << "acknowledged blocks lost (recovered at "
                      << recovered << ")";
  if (mode == "sync" && !reverting) {
    // (a) nothing acknowledged is lost.
    ASSERT_GE(recovered, last_acked)
      << "sync mode lost an acknowledged block";
  }
  // (b)
  if (!reverting) {
    ASSERT_GE(recovered, last_durable)
      << "a height reported durable was lost";
  }
  ASSERT_LE(recovered, highest) << "recovered above the last applied block";
  // (c) the state at the recovered height, exactly. Heights name one
  // state within a run, except 0: a fresh store and the genesis block.
  auto got = store.fetch_many(keys_);
  ASSERT_TRUE(got) << describe(got.error());
  auto matches = [&](const model_state& s) {
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      auto it = s.state.find(keys_[i]);
      if ((*got)[i] != (it == s.state.end() ? value{} : *it->second))
        return false;
    }
    return true;
  };
  const model_state* want = nullptr;
  const model_state* differs = nullptr;
  for (std::size_t i = states.size(); i-- > since_revert;) {
    if (states[i].height != recovered)
      continue;
    if (matches(states[i])) {
      want = &states[i];
      break;
    }
    differs = &states[i];
  }
  if (want == nullptr && differs != nullptr) {
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      auto it = differs->state.find(keys_[i]);
      auto expected = it == differs->state.end() ? value{} : *it->second;
      EXPECT_EQ((*got)[i], expected)
        << "key " << i << " differs from the state at " << recovered;
    }
  }
  ASSERT_NE(want, nullptr) << "recovered at " << recovered << ", "
                           << (differs ? "but not with its state"
                                       : "a height the writer never "
                                         "reached");
  ASSERT_FALSE(store.close());
  start_ = *want;
}

std::string crash_run::summary() const {
  std::ostringstream out;
  out << "seed " << seed_ << ", key width " << width_ << ": "
      << to_string(counts_) << ", final height " << start_.height;
  return out.str();
}

} // namespace rollblock::crash
