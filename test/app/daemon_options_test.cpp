#include "daemon_options.hpp"

#include "rollblock/messages/error.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <vector>

using namespace rollblock;

namespace {

caf::expected<daemon_options> parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"rollblockd"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parse_daemon_options(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(std::initializer_list<const char*> args) {
  auto result = parse(args);
  EXPECT_FALSE(result);
  if (result)
    return {};
  EXPECT_EQ(code_of(result.error()), ec::invalid_argument);
  return message_of(result.error());
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out{path};
  out << text;
}

} // namespace

TEST(daemon_options, defaults) {
  auto opts = parse({});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->data_dir, "./data");
  EXPECT_EQ(opts->bind, "127.0.0.1");
  EXPECT_EQ(opts->port, 7390);
  EXPECT_FALSE(opts->caf_port);
  EXPECT_FALSE(opts->metrics_port);
  EXPECT_FALSE(opts->key_bytes);
  EXPECT_FALSE(opts->durability);
  EXPECT_FALSE(opts->password);
  EXPECT_EQ(opts->max_clients, 10000u);
  EXPECT_EQ(opts->log_level, "info");
}

TEST(daemon_options, every_flag) {
  test::temp_dir dir;
  write_file(dir.sub("pw"), "s3cret\n");
  auto pw = dir.sub("pw");
  auto opts = parse({"--data-dir", "/tmp/x", "--bind", "0.0.0.0", "--port",
                     "7000", "--caf-port", "7001", "--metrics-port", "7002",
                     "--key-bytes", "32", "--page-keys", "16",
                     "--durability", "async-relaxed:64:10",
                     "--min-rollback-window", "500", "--password-file",
                     pw.c_str(), "--max-clients", "12", "--log-level",
                     "debug"});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->data_dir, "/tmp/x");
  EXPECT_EQ(opts->bind, "0.0.0.0");
  EXPECT_EQ(opts->port, 7000);
  EXPECT_EQ(opts->caf_port, std::optional<std::uint16_t>{7001});
  EXPECT_EQ(opts->metrics_port, std::optional<std::uint16_t>{7002});
  EXPECT_EQ(opts->key_bytes, std::optional<std::size_t>{32});
  EXPECT_EQ(opts->page_keys, std::optional<std::size_t>{16});
  EXPECT_EQ(opts->durability, durability_mode::async_relaxed(64, 10));
  EXPECT_EQ(opts->min_rollback_window, std::optional<std::uint64_t>{500});
  EXPECT_EQ(opts->password, std::optional<std::string>{"s3cret"});
  EXPECT_EQ(opts->max_clients, 12u);
  EXPECT_EQ(opts->log_level, "debug");
}

TEST(daemon_options, config_file_with_flags_winning) {
  test::temp_dir dir;
  write_file(dir.sub("conf"), "# comment\nport = 7100\ndata-dir = /srv/rb\n"
                              "durability = sync-relaxed:5\n");
  auto conf = dir.sub("conf");
  auto opts = parse({"--config", conf.c_str(), "--port", "7200"});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->port, 7200);
  EXPECT_EQ(opts->data_dir, "/srv/rb");
  EXPECT_EQ(opts->durability, durability_mode::synchronous_relaxed(5));
}

TEST(daemon_options, bad_values_name_the_flag) {
  EXPECT_EQ(error_of({"--port", "70000"}),
            "--port: invalid value '70000' (expected a whole number from 0 "
            "to 65535)");
  EXPECT_EQ(error_of({"--port", "-1"}),
            "--port: invalid value '-1' (expected a whole number from 0 to "
            "65535)");
  EXPECT_EQ(error_of({"--port", "abc"}),
            "--port: invalid value 'abc' (expected a whole number from 0 to "
            "65535)");
  EXPECT_EQ(error_of({"--key-bytes", "7"}),
            "--key-bytes: invalid value '7' (expected a whole number from 8 "
            "to 64)");
  EXPECT_EQ(error_of({"--page-keys", "65"}),
            "--page-keys: invalid value '65' (expected a whole number from 1 "
            "to 64)");
  EXPECT_EQ(error_of({"--page-keys", "48"}),
            "--page-keys: invalid value '48' (expected a power of two from 1 "
            "to 64)");
  EXPECT_EQ(error_of({"--max-clients", "0"}),
            "--max-clients: invalid value '0' (expected a whole number from "
            "1 to 1000000)");
  EXPECT_EQ(error_of({"--log-level", "loud"}),
            "--log-level: unknown level 'loud' (trace, debug, info, warn, "
            "error, critical, off)");
  EXPECT_NE(error_of({"--durability", "fast"}).find("--durability: invalid "
                                                    "durability mode 'fast'"),
            std::string::npos);
  EXPECT_NE(error_of({"--durability", "async:0"}).find("async needs one "
                                                       "positive count"),
            std::string::npos);
  EXPECT_NE(error_of({"--no-such-flag"}).find("no-such-flag"),
            std::string::npos);
  EXPECT_NE(error_of({"--port"}).find("port"), std::string::npos);
  EXPECT_EQ(error_of({"--data-dir", ""}),
            "--data-dir: the data directory must not be empty");
}

TEST(daemon_options, bad_files) {
  test::temp_dir dir;
  EXPECT_EQ(error_of({"--config", "/nonexistent/rollblockd.conf"}),
            "cannot read config file /nonexistent/rollblockd.conf");
  write_file(dir.sub("conf"), "colour = blue\n");
  auto conf = dir.sub("conf");
  EXPECT_NE(error_of({"--config", conf.c_str()}).find("colour"),
            std::string::npos);
  write_file(dir.sub("conf2"), "port = x\n");
  auto conf2 = dir.sub("conf2");
  EXPECT_EQ(error_of({"--config", conf2.c_str()}),
            "--port: invalid value 'x' (expected a whole number from 0 to "
            "65535)");
  EXPECT_EQ(error_of({"--password-file", "/nonexistent/pw"}),
            "--password-file: cannot read /nonexistent/pw");
  write_file(dir.sub("empty"), "\n");
  auto empty = dir.sub("empty");
  EXPECT_EQ(error_of({"--password-file", empty.c_str()}),
            "--password-file: " + empty + " holds an empty password");
}

TEST(daemon_options, non_loopback_bind_needs_a_password) {
  EXPECT_EQ(error_of({"--bind", "0.0.0.0"}),
            "--bind: refusing to listen on 0.0.0.0 without --password-file "
            "(only loopback addresses may go without a password)");
  EXPECT_TRUE(parse({"--bind", "127.0.0.2"}));
  EXPECT_TRUE(parse({"--bind", "localhost"}));
  EXPECT_TRUE(is_loopback("::1"));
  EXPECT_FALSE(is_loopback("10.0.0.1"));
}

TEST(daemon_options, restart_limits) {
  auto defaults = parse({});
  ASSERT_TRUE(defaults) << describe(defaults.error());
  EXPECT_EQ(defaults->max_restarts, 3u);
  EXPECT_EQ(defaults->restart_window_seconds, 60u);
  auto opts = parse({"--max-restarts", "0", "--restart-window", "600"});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->max_restarts, 0u);
  EXPECT_EQ(opts->restart_window_seconds, 600u);
  test::temp_dir dir;
  auto path = dir.sub("rollblockd.conf");
  write_file(path, "max-restarts = 5\nrestart-window = 30\n");
  auto from_file = parse({"--config", path.c_str(), "--max-restarts", "7"});
  ASSERT_TRUE(from_file) << describe(from_file.error());
  EXPECT_EQ(from_file->max_restarts, 7u);
  EXPECT_EQ(from_file->restart_window_seconds, 30u);
  EXPECT_EQ(error_of({"--restart-window", "0"}),
            "--restart-window: invalid value '0' (expected a whole number "
            "from 1 to 31536000)");
  EXPECT_EQ(error_of({"--max-restarts", "x"}),
            "--max-restarts: invalid value 'x' (expected a whole number from "
            "0 to 1000000)");
}

TEST(daemon_options, checkpoint_lag) {
  auto opts = parse({});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_FALSE(opts->checkpoint_lag);
  opts = parse({"--checkpoint-lag", "0"});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->checkpoint_lag, std::optional<std::uint64_t>{0});
  opts = parse({"--checkpoint-lag", "250"});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->checkpoint_lag, std::optional<std::uint64_t>{250});
  EXPECT_EQ(error_of({"--checkpoint-lag", "-1"}),
            "--checkpoint-lag: invalid value '-1' (expected a whole number "
            "from 0 to 1000000)");
}

TEST(daemon_options, memory_budget) {
  auto opts = parse({"--memory-budget", "512MiB"});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->memory_budget, std::optional<std::size_t>{512ull << 20});
  opts = parse({"--memory-budget", "unlimited"});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_FALSE(opts->memory_budget);
  opts = parse({});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_FALSE(opts->memory_budget);
  test::temp_dir dir;
  write_file(dir.sub("conf"), "memory-budget = 2GiB\n");
  auto conf = dir.sub("conf");
  opts = parse({"--config", conf.c_str()});
  ASSERT_TRUE(opts) << describe(opts.error());
  EXPECT_EQ(opts->memory_budget, std::optional<std::size_t>{2ull << 30});
  EXPECT_EQ(error_of({"--memory-budget", "512MB"}),
            "--memory-budget: invalid memory budget '512MB': unknown unit "
            "'MB' (expected B, KiB, MiB, GiB or TiB)");
  EXPECT_EQ(error_of({"--memory-budget", "12"}),
            "--memory-budget: invalid memory budget '12': the budget must be "
            "at least 64KiB (65536 bytes)");
}

// Found by daemon_options_fuzz: Boost.Program_options 1.74 never finishes
// rendering an error about a token that holds one of its message
// placeholders ("-%canonical_option%" hung rollblockd at startup).
TEST(daemon_options, message_placeholders_are_refused) {
  EXPECT_EQ(error_of({"-%canonical_option%"}),
            "argument 1 holds '%canonical_option%', which no option takes");
  EXPECT_EQ(error_of({"--data-dir", "d", "--x%prefix_option%"}),
            "argument 3 holds '%prefix_option%', which no option takes");
  test::temp_dir dir;
  auto conf = dir.sub("conf");
  write_file(conf, "port = 1\nx%value% = 2\n");
  EXPECT_EQ(error_of({"--config", conf.c_str()}),
            "config file " + conf
              + " holds '%value%', which no option takes");
  // A lone '%' or one around other text is an ordinary character.
  auto ok = parse({"--data-dir", "100%/a%B%"});
  ASSERT_TRUE(ok) << message_of(ok.error());
  EXPECT_EQ(ok->data_dir, "100%/a%B%");
}
