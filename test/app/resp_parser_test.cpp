// The RESP request parser: exact results for whole, fragmented and pipelined
// input, inline commands, binary data, and every protocol error.

#include "resp_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace rollblock;

namespace {

using command = std::vector<std::string>;

/// What a parser made of some input: the commands, then the error text if
/// it failed (empty otherwise).
struct outcome {
  std::vector<command> commands;
  std::string error;

  friend bool operator==(const outcome&, const outcome&) = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& x) {
  os << "{";
  for (auto& c : x.commands) {
    os << "[";
    for (auto& a : c)
      os << '"' << a << "\" ";
    os << "]";
  }
  return os << " error: \"" << x.error << "\"}";
}

/// Drains the parser, copying the commands (their views die on next()).
void drain(resp_parser& p, outcome& out) {
  for (;;) {
    auto r = p.next();
    if (r == resp_parser::result::need_more)
      return;
    if (r == resp_parser::result::error) {
      out.error = p.error();
      return;
    }
    command c;
    for (auto a : p.args())
      c.emplace_back(a);
    out.commands.push_back(std::move(c));
  }
}

/// Feeds `chunks` one by one; each chunk is a temporary that dies (and is
/// overwritten) after its turn, so views into old chunks would show.
outcome parse_chunks(const std::vector<std::string>& chunks,
                     resp_limits limits = {}) {
  resp_parser p{limits};
  outcome out;
  for (auto& chunk : chunks) {
    std::string copy = chunk;
    p.feed(copy);
    drain(p, out);
    std::fill(copy.begin(), copy.end(), '#');
    if (!out.error.empty())
      break;
  }
  return out;
}

outcome parse(const std::string& input, resp_limits limits = {}) {
  return parse_chunks({input}, limits);
}

// Strings are built by appending: GCC 12 at -O3 warns (-Wrestrict, a false
// positive) on "literal" + std::string temporaries.
std::string bulk(const std::string& x) {
  std::string out = "$";
  out += std::to_string(x.size());
  out += "\r\n";
  out += x;
  out += "\r\n";
  return out;
}

std::string array(const std::vector<std::string>& xs) {
  std::string out = "*";
  out += std::to_string(xs.size());
  out += "\r\n";
  for (auto& x : xs)
    out += bulk(x);
  return out;
}

/// Checks that every way of cutting `input` in two, and byte-by-byte
/// feeding, gives the same outcome as feeding it whole.
void expect_same_at_every_split(const std::string& input,
                                const outcome& expected,
                                resp_limits limits = {}) {
  ASSERT_EQ(parse(input, limits), expected);
  for (std::size_t i = 0; i <= input.size(); ++i)
    ASSERT_EQ(parse_chunks({input.substr(0, i), input.substr(i)}, limits),
              expected)
      << "split at " << i;
  std::vector<std::string> bytes;
  for (char c : input)
    bytes.emplace_back(1, c);
  ASSERT_EQ(parse_chunks(bytes, limits), expected) << "byte by byte";
}

} // namespace

TEST(resp_parser, parses_an_array_of_bulk_strings) {
  EXPECT_EQ(parse("*2\r\n$3\r\nGET\r\n$5\r\nalice\r\n"),
            (outcome{{{"GET", "alice"}}, ""}));
}

TEST(resp_parser, empty_bulk_strings_are_arguments) {
  EXPECT_EQ(parse("*3\r\n$11\r\nBLOCK.APPLY\r\n$1\r\n1\r\n$0\r\n\r\n"),
            (outcome{{{"BLOCK.APPLY", "1", ""}}, ""}));
}

TEST(resp_parser, fragmented_input_gives_the_same_result_at_every_split) {
  auto input = array({"BLOCK.APPLY", "7", "alice", "100", "bob", ""}) +
               array({"GET", "alice"}) + "PING\r\n" +
               array({"MGET", "alice", "bob"});
  expect_same_at_every_split(input,
                             {{{"BLOCK.APPLY", "7", "alice", "100", "bob", ""},
                               {"GET", "alice"},
                               {"PING"},
                               {"MGET", "alice", "bob"}},
                              ""});
}

TEST(resp_parser, fragmented_errors_are_the_same_at_every_split) {
  expect_same_at_every_split(array({"GET", "a"}) + "*1\r\n:3\r\n",
                             {{{"GET", "a"}},
                              "Protocol error: expected '$', got ':'"});
  expect_same_at_every_split("*2\r\n$3\r\nGET\r\n$x\r\n",
                             {{}, "Protocol error: invalid bulk length"});
}

TEST(resp_parser, pipelined_commands_in_one_chunk) {
  std::string input;
  outcome expected;
  for (int i = 0; i < 100; ++i) {
    auto k = "key" + std::to_string(i);
    input += array({"GET", k});
    expected.commands.push_back({"GET", k});
  }
  EXPECT_EQ(parse(input), expected);
}

TEST(resp_parser, pipelined_commands_across_chunks) {
  auto input = array({"GET", "a"}) + array({"GET", "b"});
  // The second command starts in the first chunk and ends in the second.
  EXPECT_EQ(parse_chunks({input.substr(0, 20), input.substr(20)}),
            (outcome{{{"GET", "a"}, {"GET", "b"}}, ""}));
}

TEST(resp_parser, binary_and_zero_bytes_pass_unchanged) {
  std::string key{"a\0b\r\nc", 6};
  std::string value;
  for (int i = 0; i < 256; ++i)
    value.push_back(static_cast<char>(i));
  auto input = array({"BLOCK.APPLY", "1", key, value});
  expect_same_at_every_split(input,
                             {{{"BLOCK.APPLY", "1", key, value}}, ""});
}

TEST(resp_parser, inline_commands) {
  EXPECT_EQ(parse("PING\r\n"), (outcome{{{"PING"}}, ""}));
  EXPECT_EQ(parse("GET alice\n"), (outcome{{{"GET", "alice"}}, ""}));
  EXPECT_EQ(parse("  GET   alice  \r\n"), (outcome{{{"GET", "alice"}}, ""}));
  EXPECT_EQ(parse("SET \"a b\" 'c d'\r\n"),
            (outcome{{{"SET", "a b", "c d"}}, ""}));
  EXPECT_EQ(parse("SET \"\\x41\\n\\t\\\"\" 'it\\'s'\r\n"),
            (outcome{{{"SET", "A\n\t\"", "it's"}}, ""}));
  EXPECT_EQ(parse("SET \"\" x\r\n"), (outcome{{{"SET", "", "x"}}, ""}));
  // Empty lines are skipped, as are empty arrays.
  EXPECT_EQ(parse("\r\n\n   \r\nPING\r\n*0\r\n*-1\r\nPING\r\n"),
            (outcome{{{"PING"}, {"PING"}}, ""}));
}

TEST(resp_parser, inline_and_array_commands_mix_at_every_split) {
  expect_same_at_every_split("GET a\r\n" + array({"GET", "b"}) +
                               "MGET \"c d\" e\n",
                             {{{"GET", "a"}, {"GET", "b"},
                               {"MGET", "c d", "e"}},
                              ""});
}

TEST(resp_parser, inline_errors) {
  EXPECT_EQ(parse("GET \"alice\r\n"),
            (outcome{{}, "Protocol error: unbalanced quotes in request"}));
  EXPECT_EQ(parse("GET 'alice\r\n"),
            (outcome{{}, "Protocol error: unbalanced quotes in request"}));
  EXPECT_EQ(parse("GET \"al\"ice\r\n"),
            (outcome{{}, "Protocol error: unbalanced quotes in request"}));
  resp_limits small;
  small.max_inline = 16;
  EXPECT_EQ(parse(std::string(17, 'x'), small),
            (outcome{{}, "Protocol error: too big inline request"}));
  EXPECT_EQ(parse(std::string(16, 'x'), small), (outcome{{}, ""}));
}

// Found by resp_parser_fuzz: a complete line above max_inline parsed when it
// arrived in one read and failed when split.
TEST(resp_parser, too_big_inline_line_fails_at_every_split) {
  resp_limits small;
  small.max_inline = 16;
  expect_same_at_every_split(
    "PING\r\n" + std::string(17, 'x') + "\r\nPING\r\n",
    {{{"PING"}}, "Protocol error: too big inline request"}, small);
  expect_same_at_every_split(std::string(16, 'x') + "\n",
                             {{{std::string(16, 'x')}}, ""}, small);
}

TEST(resp_parser, bad_multibulk_length) {
  auto err = outcome{{}, "Protocol error: invalid multibulk length"};
  EXPECT_EQ(parse("*x\r\n"), err);
  EXPECT_EQ(parse("*\r\n"), err);
  EXPECT_EQ(parse("*+1\r\n"), err);
  EXPECT_EQ(parse("*01\r\n"), err);
  EXPECT_EQ(parse("*1 \r\n"), err);
  EXPECT_EQ(parse("*99999999999999999999\r\n"), err);
}

TEST(resp_parser, too_many_elements) {
  resp_limits limits;
  limits.max_elements = 3;
  EXPECT_EQ(parse(array({"a", "b", "c"}), limits),
            (outcome{{{"a", "b", "c"}}, ""}));
  EXPECT_EQ(parse("*4\r\n", limits),
            (outcome{{}, "Protocol error: invalid multibulk length"}));
  EXPECT_EQ(parse("*1048577\r\n"),
            (outcome{{}, "Protocol error: invalid multibulk length"}));
}

TEST(resp_parser, bad_bulk_length) {
  auto err = outcome{{}, "Protocol error: invalid bulk length"};
  EXPECT_EQ(parse("*1\r\n$-1\r\n"), err);
  EXPECT_EQ(parse("*1\r\n$abc\r\n"), err);
  EXPECT_EQ(parse("*1\r\n$\r\n"), err);
  EXPECT_EQ(parse("*1\r\n$1x\r\n"), err);
}

TEST(resp_parser, bulk_data_must_end_with_crlf) {
  EXPECT_EQ(parse("*1\r\n$3\r\nabcd\r\n"),
            (outcome{{},
                     "Protocol error: bulk string of 3 bytes not followed "
                     "by CRLF"}));
  EXPECT_EQ(parse("*1\r\n$3\r\nab\r\n\r\n"),
            (outcome{{},
                     "Protocol error: bulk string of 3 bytes not followed "
                     "by CRLF"}));
}

TEST(resp_parser, header_cr_must_be_followed_by_lf) {
  EXPECT_EQ(parse("*1\rx"),
            (outcome{{}, "Protocol error: expected '\\n' after '\\r', got "
                         "'x'"}));
}

TEST(resp_parser, bad_type_byte) {
  EXPECT_EQ(parse("*2\r\n$3\r\nGET\r\n:1\r\n"),
            (outcome{{}, "Protocol error: expected '$', got ':'"}));
  EXPECT_EQ(parse("*1\r\n+OK\r\n"),
            (outcome{{}, "Protocol error: expected '$', got '+'"}));
  // Unprintable bytes are shown escaped, so the reply stays one line.
  EXPECT_EQ(parse(std::string{"*1\r\n\r\n"}),
            (outcome{{}, "Protocol error: expected '$', got '\\x0d'"}));
  EXPECT_EQ(parse(std::string{"*1\r\n\0", 5}),
            (outcome{{}, "Protocol error: expected '$', got '\\x00'"}));
}

TEST(resp_parser, oversize_bulk) {
  resp_limits limits;
  limits.max_bulk_length = 100;
  EXPECT_EQ(parse(array({std::string(100, 'v')}), limits),
            (outcome{{{std::string(100, 'v')}}, ""}));
  // Refused at the header, before the data arrives.
  EXPECT_EQ(parse("*1\r\n$101\r\n", limits),
            (outcome{{}, "Protocol error: invalid bulk length"}));
}

TEST(resp_parser, oversize_request_for_the_buffer) {
  resp_limits limits;
  limits.max_buffer = 1000;
  // A bulk that cannot fit is refused at its header.
  EXPECT_EQ(parse("*1\r\n$2000\r\n", limits),
            (outcome{{},
                     "Protocol error: request exceeds the client buffer "
                     "limit of 1000 bytes"}));
  // Many small bulks that add up are refused once they pass the limit.
  std::vector<std::string> chunks{"*1000\r\n"};
  for (int i = 0; i < 200; ++i)
    chunks.push_back(bulk("xxxx"));
  EXPECT_EQ(parse_chunks(chunks, limits).error,
            "Protocol error: request exceeds the client buffer limit of 1000 "
            "bytes");
}

TEST(resp_parser, too_big_header_lines) {
  resp_limits limits;
  limits.max_inline = 10;
  EXPECT_EQ(parse(std::string("*").append(11, '1'), limits),
            (outcome{{}, "Protocol error: too big mbulk count string"}));
  EXPECT_EQ(parse(std::string("*1\r\n$").append(11, '1'), limits),
            (outcome{{}, "Protocol error: too big bulk count string"}));
}

TEST(resp_parser, unauthenticated_limits) {
  resp_parser p;
  p.set_authenticated(false);
  p.feed("*11\r\n");
  EXPECT_EQ(p.next(), resp_parser::result::error);
  EXPECT_EQ(p.error(), "Protocol error: unauthenticated multibulk length");
  resp_parser q;
  q.set_authenticated(false);
  q.feed("*2\r\n$4\r\nAUTH\r\n$16385\r\n");
  EXPECT_EQ(q.next(), resp_parser::result::error);
  EXPECT_EQ(q.error(), "Protocol error: unauthenticated bulk length");
}

TEST(resp_parser, the_error_sticks) {
  resp_parser p;
  p.feed("*1\r\n:1\r\n");
  EXPECT_EQ(p.next(), resp_parser::result::error);
  p.feed("PING\r\n");
  EXPECT_EQ(p.next(), resp_parser::result::error);
}

TEST(resp_parser, big_block_apply_in_many_chunks) {
  // 20,000 ops of 8-byte keys and values, fed in 4 KiB chunks.
  std::vector<std::string> args{"BLOCK.APPLY", "12345"};
  for (int i = 0; i < 20000; ++i) {
    auto digits = std::to_string(i);
    args.push_back(std::string("k").append(7 - digits.size(), '0') + digits);
    args.emplace_back(std::string(8, static_cast<char>('a' + i % 26)));
  }
  auto input = array(args) + "PING\r\n";
  std::vector<std::string> chunks;
  for (std::size_t i = 0; i < input.size(); i += 4096)
    chunks.push_back(input.substr(i, 4096));
  auto out = parse_chunks(chunks);
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(out.commands.size(), 2u);
  EXPECT_EQ(out.commands[0], args);
  EXPECT_EQ(out.commands[1], command{"PING"});
}

TEST(resp_parser, a_value_above_the_store_limit_still_parses) {
  std::string v(65536, 'v');
  auto out = parse(array({"BLOCK.APPLY", "1", "k", v}));
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(out.commands.size(), 1u);
  EXPECT_EQ(out.commands[0][3].size(), 65536u);
}

TEST(resp_parser, views_point_into_the_chunk_when_a_request_fits) {
  std::string input = array({"GET", "alice"});
  resp_parser p;
  p.feed(input);
  ASSERT_EQ(p.next(), resp_parser::result::command);
  EXPECT_GE(p.args()[1].data(), input.data());
  EXPECT_LT(p.args()[1].data(), input.data() + input.size());
  EXPECT_EQ(p.next(), resp_parser::result::need_more);
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(resp_parser, integers_parse_like_redis) {
  std::int64_t x = 0;
  EXPECT_TRUE(parse_resp_int("0", x));
  EXPECT_EQ(x, 0);
  EXPECT_TRUE(parse_resp_int("-1", x));
  EXPECT_EQ(x, -1);
  EXPECT_TRUE(parse_resp_int("9223372036854775807", x));
  EXPECT_EQ(x, INT64_MAX);
  EXPECT_TRUE(parse_resp_int("-9223372036854775808", x));
  EXPECT_EQ(x, INT64_MIN);
  EXPECT_FALSE(parse_resp_int("9223372036854775808", x));
  EXPECT_FALSE(parse_resp_int("-0", x));
  EXPECT_FALSE(parse_resp_int("00", x));
  EXPECT_FALSE(parse_resp_int("+1", x));
  EXPECT_FALSE(parse_resp_int("", x));
  EXPECT_FALSE(parse_resp_int("-", x));
  EXPECT_FALSE(parse_resp_int("1a", x));
}
