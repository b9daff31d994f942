// libFuzzer target: opening a journal directory (storage::journal::open) and
// reading every entry.
//
// Input: byte 0: bit 0 rewrites the checksums of the entries each segment
// starts with (journal_bytes.hpp); bits 1-2 + 1: the number of segment files
// (1..4); bit 3 leaves a gap in their sequence numbers. Byte 1 picks the key
// width (8..64). Then, for every segment but the last, a 2-byte little-endian
// length and that many bytes; the last segment takes the rest.
//
// The segments are written to a directory and opened read-only
// (repair = false), then with repair. Checked:
// - each open ends in a journal or a precise rollblock error
//   (journal_corrupt, format_version_mismatch, config_mismatch), the same for
//   both opens, and the read-only open changes no file;
// - every indexed entry reads back (read_from), heights strictly increase,
//   and each record re-encodes to exactly the bytes at its position;
// - the repairing open reports the same tail and the same leftover empty
//   segments as the read-only one and keeps the same index; after it, every
//   segment but the newest ends with a trailer naming the next one, and a
//   read-only open finds nothing to cut or remove.

#include "journal_bytes.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/journal.hpp"
#include "rollblock/storage/logger.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

using namespace rollblock;
namespace fs = std::filesystem;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "journal_segment_fuzz: invariant violated: %s\n",
                 what);
    std::abort();
  }
}

/// A directory of this process's own, removed at exit.
struct scratch_dir {
  fs::path base = fs::temp_directory_path()
                  / ("rollblock-journal-fuzz-" + std::to_string(::getpid()));
  scratch_dir() {
    fs::remove_all(base);
    fs::create_directories(base);
  }
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(base, ignored);
  }
};

/// The directory of this process's journal, emptied for every input.
fs::path journal_dir() {
  static const scratch_dir scratch;
  return scratch.base / "journal";
}

std::map<std::string, std::string> read_dir(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (auto& entry : fs::directory_iterator{dir}) {
    std::ifstream in{entry.path(), std::ios::binary};
    std::ostringstream buf;
    buf << in.rdbuf();
    files[entry.path().filename().string()] = buf.str();
  }
  return files;
}

bool expected_code(const caf::error& err) {
  auto code = code_of(err);
  return code == ec::journal_corrupt || code == ec::format_version_mismatch
         || code == ec::config_mismatch;
}

/// Checks every entry of an opened journal against the files' bytes.
void check_entries(const storage::journal& j, std::size_t width) {
  auto& index = j.index();
  if (index.empty())
    return;
  auto records = j.read_from(index.front().height);
  check(static_cast<bool>(records), "read_from failed on an opened journal");
  check(records->size() == index.size(), "read_from misses indexed entries");
  auto files = read_dir(j.dir());
  for (std::size_t i = 0; i < index.size(); ++i) {
    auto& pos = index[i];
    auto& rec = *(*records)[i];
    check(rec.height == pos.height, "a record at another height than indexed");
    if (i > 0)
      check(pos.height > index[i - 1].height, "heights do not increase");
    char name[32];
    std::snprintf(name, sizeof name, "%06llu.rbj",
                  static_cast<unsigned long long>(pos.segment));
    auto& file = files[name];
    check(pos.offset + pos.size <= file.size(), "an entry past its file");
    check(storage::encode_journal_entry(rec, width)
            == file.substr(pos.offset, pos.size),
          "an entry does not re-encode to its bytes");
  }
}

/// Checks that every segment file in `dir` but the newest ends with a
/// trailer naming the next one, as a repaired journal must.
void check_trailers(const fs::path& dir, std::size_t width) {
  auto files = read_dir(dir);
  std::size_t seen = 0;
  for (auto& [name, bytes] : files) {
    if (++seen == files.size())
      break;
    check(bytes.size() >= fuzz::journal_header_size + 8,
          "a segment but the newest is too short for a trailer");
    auto trailer = storage::decode_journal_trailer(
      std::string_view{bytes}.substr(bytes.size() - fuzz::journal_header_size
                                     - 8),
      width);
    check(static_cast<bool>(trailer),
          "a segment but the newest does not end with a trailer");
    char next[32];
    std::snprintf(next, sizeof next, "%06llu.rbj",
                  static_cast<unsigned long long>(trailer->next_segment));
    check(std::next(files.find(name)) != files.end()
            && std::next(files.find(name))->first == next,
          "a trailer does not name the next segment");
  }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Opening reports torn tails at warn level: keep the fuzzer's output
  // readable.
  logger().set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  if (size < 2)
    return 0;
  auto flags = data[0];
  auto width = min_key_width + data[1] % (max_key_width - min_key_width + 1);
  std::size_t count = 1 + ((flags >> 1) & 3);
  std::vector<std::string> segments;
  std::size_t pos = 2;
  for (std::size_t i = 0; i + 1 < count && size - pos >= 2; ++i) {
    std::size_t len = data[pos] | (std::size_t{data[pos + 1]} << 8);
    pos += 2;
    len = std::min(len, size - pos);
    segments.emplace_back(reinterpret_cast<const char*>(data) + pos, len);
    pos += len;
  }
  segments.emplace_back(reinterpret_cast<const char*>(data) + pos, size - pos);
  auto dir = journal_dir();
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::uint64_t seq = 1;
  for (auto& bytes : segments) {
    if (flags & 1)
      fuzz::fix_journal_checksums(bytes);
    char name[32];
    std::snprintf(name, sizeof name, "%06llu.rbj",
                  static_cast<unsigned long long>(seq));
    std::ofstream{dir / name, std::ios::binary} << bytes;
    seq += (flags & 8) ? 3 : 1;
  }
  auto before = read_dir(dir);

  storage::journal::options opts;
  opts.dir = dir;
  opts.key_width = width;
  opts.repair = false;
  storage::journal_open_report seen;
  auto read_only = storage::journal::open(opts, &seen);
  check(read_dir(dir) == before, "a read-only open changed a file");
  if (!read_only)
    check(expected_code(read_only.error()),
          "read-only open: an unexpected error code");
  else
    check_entries(**read_only, width);

  opts.repair = true;
  storage::journal_open_report repaired_report;
  auto repaired = storage::journal::open(opts, &repaired_report);
  check(static_cast<bool>(repaired) == static_cast<bool>(read_only),
        "the repairing open and the read-only open disagree");
  if (!repaired) {
    check(code_of(repaired.error()) == code_of(read_only.error()),
          "the opens fail with different codes");
    check(read_dir(dir) == before, "a failed open changed a file");
    return 0;
  }
  check(repaired_report.truncated_bytes == seen.truncated_bytes
          && repaired_report.truncated_offset == seen.truncated_offset
          && repaired_report.truncated_file == seen.truncated_file,
        "the repairing open cut another tail than the read-only one reported");
  check(repaired_report.leftover_segments == seen.leftover_segments,
        "the repairing open removed other segments than the read-only one "
        "reported");
  check_trailers(dir, width);
  auto& index = (*repaired)->index();
  auto& seen_index = (*read_only)->index();
  check(index.size() == seen_index.size(),
        "the opens index different entries");
  for (std::size_t i = 0; i < index.size(); ++i)
    check(index[i].height == seen_index[i].height
            && index[i].segment == seen_index[i].segment
            && index[i].offset == seen_index[i].offset
            && index[i].size == seen_index[i].size,
          "the opens index different entries");
  check_entries(**repaired, width);
  auto entries = index.size();
  repaired->reset();

  opts.repair = false;
  storage::journal_open_report after;
  auto reopened = storage::journal::open(opts, &after);
  check(static_cast<bool>(reopened), "a repaired journal does not reopen");
  check(after.truncated_bytes == 0, "a repaired journal still has a tail");
  check(after.leftover_segments.empty(),
        "a repaired journal still has leftover segments");
  check((*reopened)->index().size() == entries,
        "a repaired journal lost entries");
  return 0;
}
