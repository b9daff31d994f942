// Writes the seed corpus of the journal fuzz targets with the real journal
// writer (storage::journal and encode_journal_entry):
//
//   make_journal_seeds <corpus dir>
//
// fills <corpus dir>/journal_entry/ and <corpus dir>/journal_segment/ with
// inputs in the layouts journal_entry_fuzz.cpp and journal_segment_fuzz.cpp
// read: a flags byte, a key-width byte (width - 8), then the entry or the
// segments.

#include "rollblock/storage/journal.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace rollblock;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "make_journal_seeds: %s\n", what.c_str());
  std::exit(1);
}

key key_of(int i, std::size_t width) {
  key k(width, '\0');
  for (std::size_t j = 0; j < width; ++j)
    k[j] = static_cast<char>('a' + (i + static_cast<int>(j)) % 26);
  return k;
}

/// Block `height`: a write, an overwrite with undo and a delete.
block_record record(block_id height, std::size_t width) {
  block_record rec;
  rec.height = height;
  auto h = static_cast<int>(height);
  rec.changes.push_back({key_of(h, width), "v" + std::to_string(height), ""});
  rec.changes.push_back(
    {key_of(h + 1, width), std::string(height % 7 * 40, 'x'), "old"});
  if (height % 2 == 0)
    rec.changes.push_back({key_of(h + 2, width), "", "gone"});
  return rec;
}

std::string read_file(const fs::path& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void write_seed(const fs::path& dir, const std::string& name,
                std::uint8_t flags, std::size_t width,
                const std::string& body) {
  std::string bytes;
  bytes.push_back(static_cast<char>(flags));
  bytes.push_back(static_cast<char>(width - min_key_width));
  bytes += body;
  std::ofstream{dir / name, std::ios::binary} << bytes;
}

/// The segment files of a journal of `heights`, written by storage::journal
/// with `segment_bytes`, oldest first.
std::vector<std::string> write_journal(const fs::path& dir, std::size_t width,
                                       const std::vector<block_id>& heights,
                                       std::uint64_t segment_bytes) {
  fs::remove_all(dir);
  storage::journal::options opts;
  opts.dir = dir;
  opts.key_width = width;
  opts.segment_bytes = segment_bytes;
  auto j = storage::journal::open(opts);
  if (!j)
    die("cannot open a journal in " + dir.string());
  for (auto h : heights)
    if (auto err = (*j)->append(record(h, width)))
      die("append failed");
  if (auto err = (*j)->sync())
    die("sync failed");
  std::vector<fs::path> files;
  for (auto& entry : fs::directory_iterator{dir})
    files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> segments;
  for (auto& f : files)
    segments.push_back(read_file(f));
  return segments;
}

/// The journal_segment layout of several segments: 2-byte lengths before
/// every segment but the last. REQUIRES: 1 to 4 segments of < 64 KiB.
std::string segments_body(const std::vector<std::string>& segments) {
  std::string body;
  for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
    auto len = segments[i].size();
    body.push_back(static_cast<char>(len & 0xff));
    body.push_back(static_cast<char>(len >> 8));
    body += segments[i];
  }
  body += segments.back();
  return body;
}

std::uint8_t segment_flags(std::size_t count, bool fix) {
  return static_cast<std::uint8_t>(((count - 1) << 1) | (fix ? 1 : 0));
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2)
    die("usage: make_journal_seeds <corpus dir>");
  fs::path corpus = argv[1];
  auto entries = corpus / "journal_entry";
  auto segments = corpus / "journal_segment";
  fs::create_directories(entries);
  fs::create_directories(segments);
  auto scratch = fs::temp_directory_path()
                 / ("rollblock-seeds-" + std::to_string(::getpid()));

  // Entries, as the journal encodes them.
  for (std::size_t width : {8, 32, 64}) {
    auto w = std::to_string(width);
    write_seed(entries, "block_width_" + w, 0, width,
               storage::encode_journal_entry(record(4, width), width));
    block_record empty;
    empty.height = 7;
    write_seed(entries, "no_changes_width_" + w, 0, width,
               storage::encode_journal_entry(empty, width));
  }
  auto entry = storage::encode_journal_entry(record(6, 8), 8);
  write_seed(entries, "torn", 1, 8, entry.substr(0, entry.size() - 5));
  write_seed(entries, "checksums_to_fix", 1, 8, entry);
  auto bad_layout = entry;
  bad_layout[16] = 2; // change count 2 instead of 3
  write_seed(entries, "bad_change_count", 1, 8, bad_layout);
  // Segment trailers (kind 2).
  auto trailer = storage::encode_journal_trailer({6, 2}, 8);
  write_seed(entries, "trailer_width_8", 0, 8, trailer);
  write_seed(entries, "trailer_width_64", 0, 64,
             storage::encode_journal_trailer({~block_id{0}, 1000}, 64));
  auto trailer_count = trailer;
  trailer_count[16] = 1; // a trailer with a change
  write_seed(entries, "trailer_with_a_change", 1, 8, trailer_count);
  auto version_1 = entry;
  version_1[4] = 1; // the format before trailers
  write_seed(entries, "version_1", 1, 8, version_1);

  // Segments, as the journal writes them.
  auto one = write_journal(scratch, 8, {1, 2, 3, 5, 8}, 1 << 20);
  write_seed(segments, "one_segment", segment_flags(1, false), 8, one[0]);
  write_seed(segments, "torn_tail", segment_flags(1, true), 8,
             one[0].substr(0, one[0].size() - 7));
  // Every segment but the newest ends with a trailer naming the next one.
  auto rolled = write_journal(scratch, 16, {10, 11, 12, 13, 14, 15}, 400);
  if (rolled.size() < 3 || rolled.size() > 4)
    die("rolled_segments: expected 3 or 4 segments, got "
        + std::to_string(rolled.size()));
  write_seed(segments, "rolled_segments", segment_flags(rolled.size(), true),
             16, segments_body(rolled));
  // The newest segment deleted: the trailer before names a missing file.
  auto missing = rolled;
  missing.pop_back();
  write_seed(segments, "missing_newest", segment_flags(missing.size(), false),
             16, segments_body(missing));
  // A roll stopped before its trailer: an empty segment after one without.
  auto trailer_at = rolled[0].size() - 48;
  auto untrailed = std::vector<std::string>{rolled[0].substr(0, trailer_at),
                                            ""};
  write_seed(segments, "leftover_empty", segment_flags(2, false), 16,
             segments_body(untrailed));
  // A torn trailer before the empty next segment: a torn tail.
  auto torn_trailer = std::vector<std::string>{
    rolled[0].substr(0, trailer_at + 21), ""};
  write_seed(segments, "torn_trailer", segment_flags(2, false), 16,
             segments_body(torn_trailer));
  auto wide = write_journal(scratch, 64, {0, 1}, 1 << 20);
  write_seed(segments, "width_64", segment_flags(1, false), 64, wide[0]);
  write_seed(segments, "empty", segment_flags(1, false), 8, "");
  fs::remove_all(scratch);
  return 0;
}
