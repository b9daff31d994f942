// libFuzzer target: the RESP request parser (app/resp_parser.hpp).
//
// Input: byte 0 chooses the limits (bit 0: unauthenticated client, bit 1:
// small limits, so that the limit checks are reachable with short inputs),
// byte 1 seeds the chunking, the rest is the byte stream a client sends.
//
// The stream is parsed twice: fed whole, and fed in pseudo-random chunks
// (1 to 64 bytes, now and then the rest), each chunk a separate heap buffer
// freed as soon as the parser may no longer use it (AddressSanitizer catches
// a parser still pointing into it), sometimes after retain(). Checked:
// - both parses yield the same commands, the same final result and the same
//   error text (a request split at any byte parses the same);
// - every command has at least one argument, each within the limits;
// - the parser never holds more bytes than it was fed, nor more than the
//   client buffer limit after need_more;
// - a failed parser stays failed.

#include "resp_parser.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace rollblock;

namespace {

using command = std::vector<std::string>;

struct outcome {
  std::vector<command> commands;
  resp_parser::result last = resp_parser::result::need_more;
  std::string error;
};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "resp_parser_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

resp_limits limits_for(std::uint8_t flags) {
  resp_limits limits;
  if (flags & 2) {
    limits.max_buffer = 2048;
    limits.max_bulk_length = 512;
    limits.max_elements = 16;
    limits.max_inline = 256;
    limits.unauthenticated_max_elements = 4;
    limits.unauthenticated_max_bulk_length = 64;
  }
  return limits;
}

/// Runs next() until need_more or error, recording the commands.
void drain(resp_parser& parser, outcome& out, std::size_t fed) {
  const auto& limits = parser.limits();
  for (;;) {
    auto r = parser.next();
    check(parser.buffered() <= fed, "buffered() above the bytes fed");
    if (r != resp_parser::result::command) {
      out.last = r;
      if (r == resp_parser::result::error) {
        out.error = parser.error();
        check(out.error.rfind("Protocol error: ", 0) == 0,
              "error text without 'Protocol error: '");
      } else {
        check(parser.buffered() <= limits.max_buffer,
              "need_more while holding more than max_buffer");
      }
      return;
    }
    const auto& args = parser.args();
    check(!args.empty(), "a command without arguments");
    check(args.size() <= limits.max_elements
            || args.size() <= limits.max_inline,
          "more arguments than any limit allows");
    command cmd;
    for (auto arg : args) {
      check(arg.size() <= limits.max_bulk_length
              || arg.size() <= limits.max_inline,
            "an argument longer than any limit allows");
      cmd.emplace_back(arg);
    }
    out.commands.push_back(std::move(cmd));
  }
}

outcome parse_whole(std::string_view input, std::uint8_t flags) {
  resp_parser parser{limits_for(flags)};
  parser.set_authenticated((flags & 1) == 0);
  outcome out;
  parser.feed(input);
  drain(parser, out, input.size());
  return out;
}

outcome parse_chunked(std::string_view input, std::uint8_t flags,
                      std::uint8_t seed) {
  resp_parser parser{limits_for(flags)};
  parser.set_authenticated((flags & 1) == 0);
  outcome out;
  std::uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  auto random = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::size_t fed = 0;
  while (fed < input.size()) {
    auto left = input.size() - fed;
    auto size = random() % 16 == 0 ? left : 1 + random() % 64;
    if (size > left)
      size = left;
    // A heap copy of the chunk, freed before the next one is fed.
    auto chunk = std::make_unique<char[]>(size);
    std::copy_n(input.data() + fed, size, chunk.get());
    fed += size;
    parser.feed({chunk.get(), size});
    if (random() % 4 == 0) {
      // The chunk dies early: the parser must have copied what it needs.
      parser.retain();
      chunk.reset();
    }
    drain(parser, out, fed);
    if (out.last == resp_parser::result::error)
      break;
  }
  if (input.empty())
    drain(parser, out, 0);
  if (out.last == resp_parser::result::error) {
    parser.feed("PING\r\n");
    check(parser.next() == resp_parser::result::error,
          "a failed parser parsed again");
  }
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  if (size < 2)
    return 0;
  auto flags = data[0];
  auto seed = data[1];
  std::string_view input{reinterpret_cast<const char*>(data) + 2, size - 2};
  auto whole = parse_whole(input, flags);
  auto chunked = parse_chunked(input, flags, seed);
  check(whole.commands == chunked.commands,
        "chunked input parsed into other commands");
  check(whole.last == chunked.last, "chunked input ended differently");
  check(whole.error == chunked.error, "chunked input failed differently");
  return 0;
}
