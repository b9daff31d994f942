#pragma once

#include "rollblock/messages/block_record.hpp"
#include "rollblock/messages/types.hpp"
#include "rollblock/storage/file_system.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rollblock::storage {

/// Where one journal entry lives.
struct journal_position {
  block_id height = 0;
  std::uint64_t segment = 0; ///< Sequence number of the segment file.
  std::uint64_t offset = 0;  ///< Byte offset of the entry in that file.
  std::uint32_t size = 0;    ///< Header plus payload bytes.
};

/// What opening the journal found and repaired.
struct journal_open_report {
  std::size_t segments = 0;
  std::size_t entries = 0;
  /// Bytes cut from the tail of the last segment (a torn or corrupt tail),
  /// later segments included; with options::repair false, the bytes that a
  /// repairing open would cut (nothing is cut).
  std::uint64_t truncated_bytes = 0;
  /// The file and offset where the tail was (or would be) cut, when it was.
  std::string truncated_file;
  std::uint64_t truncated_offset = 0;
  /// Empty segment files after the first segment that ends without a
  /// trailer, left by a roll or a truncate_after that a crash interrupted
  /// (oldest first): removed by a repairing open, only reported otherwise.
  std::vector<std::string> leftover_segments;
  /// The height of a truncate_after that a crash interrupted (its
  /// truncation record was found): a repairing open completed it, a
  /// read-only one shows the index as if it had.
  std::optional<block_id> completed_truncation;
  /// Whether a truncation record that does not verify was found (torn by a
  /// crash before the truncation began): a repairing open deleted it.
  bool torn_truncation_record = false;
};

/// The last entry of every segment but the newest (entry kind 2): written
/// when the journal rolls, it names the segment that follows, so that a
/// missing newest segment is found at open.
struct journal_trailer {
  /// The height of the newest block entry before the trailer (0 if none).
  block_id last_height = 0;
  /// The sequence number of the next segment.
  std::uint64_t next_segment = 0;

  friend bool operator==(const journal_trailer&,
                         const journal_trailer&) = default;
};

/// Encodes `record` as one journal entry (header + payload), for a store
/// whose keys are `key_width` bytes: the header, then the record's
/// change_list buffer as it is (it is the payload). REQUIRES: the record's
/// keys have that width (its values fit by construction).
std::string encode_journal_entry(const block_record& record,
                                 std::size_t key_width);

/// Decodes one whole entry as written by encode_journal_entry. Returns
/// ec::journal_corrupt for a bad magic, checksum, length or layout (and for
/// a segment trailer, which is not a block), ec::format_version_mismatch for
/// another format version and ec::config_mismatch for another key width.
/// Never reads past `bytes`.
caf::expected<block_record> decode_journal_entry(std::string_view bytes,
                                                 std::size_t key_width);

/// Encodes `trailer` as one journal entry (kind 2), for a store whose keys
/// are `key_width` bytes.
std::string encode_journal_trailer(const journal_trailer& trailer,
                                   std::size_t key_width);

/// Decodes one whole trailer entry as written by encode_journal_trailer,
/// with the errors of decode_journal_entry (ec::journal_corrupt for a block
/// entry). Never reads past `bytes`.
caf::expected<journal_trailer>
decode_journal_trailer(std::string_view bytes, std::size_t key_width);

/// The append-only block journal: segment files of entries {height, changes
/// with undo}, each checksummed. Not thread-safe: one owner (the journal
/// actor) at a time.
class journal {
public:
  struct options {
    std::filesystem::path dir;
    std::size_t key_width = default_key_width;
    /// A new segment starts once the active one holds this many bytes.
    std::uint64_t segment_bytes = 64ull << 20;
    /// Whether open() may change files. When false (a read-only open, e.g.
    /// for offline inspection) open() changes no file: the directory and the
    /// first segment are not created (a missing directory is ec::io_error), a
    /// torn tail is reported in journal_open_report exactly as with repair
    /// but not cut (the index simply ends before it), and later segments are
    /// not deleted. Such a journal refuses every change (append, sync,
    /// truncate_after, drop_through) with ec::invalid_argument ("journal
    /// opened read-only"); reading (index, read_from, ...) works as usual,
    /// and size_bytes() counts the files as they are, torn tail included.
    bool repair = true;
    /// Every file operation goes through this; null means
    /// posix_file_system(). Tests pass a fault-injecting one.
    std::shared_ptr<file_system> fs{};
    /// A height the journal must hold (the store's checkpoint, which only
    /// covers fsynced blocks). When the journal holds no entry at it, open()
    /// fails with ec::journal_corrupt and changes no file, even where it
    /// would otherwise cut a torn tail: a segment is missing, or the journal
    /// was cut short or damaged below a durable height.
    std::optional<block_id> required_height{};
    /// Whether the journal was created before (its store exists). Without a
    /// checkpoint nothing else names a block the journal must hold: a
    /// directory without any segment file then fails with
    /// ec::journal_corrupt instead of starting an empty journal.
    bool must_exist = false;
  };

  /// Opens the journal in `opts.dir`, creating the directory when missing.
  /// Reads and verifies every entry. A torn or corrupt tail (a bad last entry
  /// with no valid entry after it) is cut off and reported (only reported
  /// when `opts.repair` is false); a bad entry with a
  /// valid entry after it is ec::journal_corrupt naming file, offset and the
  /// last good height. Heights must increase along the journal
  /// (ec::journal_corrupt otherwise). Every segment but the newest must end
  /// with a trailer naming the next one: a trailer naming a segment that is
  /// missing (the newest segments were deleted) is ec::journal_corrupt
  /// naming that file, as is a segment without a trailer before one that
  /// holds any byte; empty segments after one without a trailer (left by a
  /// crash in a roll or in truncate_after) are deleted and listed in
  /// journal_open_report::leftover_segments (only listed without repair).
  static caf::expected<std::unique_ptr<journal>>
  open(const options& opts, journal_open_report* report = nullptr);

  ~journal();
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  /// Appends `record` to the active segment (without fsync), rolling to a new
  /// segment first when the active one is full: the full one is fsynced, the
  /// next one created and the directory fsynced, then a trailer naming the
  /// next one is appended to the full one and fsynced, and only then is the
  /// new one used. A short write is continued until the whole entry is
  /// written.
  /// REQUIRES: record.height above last_height() unless the journal is empty.
  /// On a failed write the segment is truncated back to the entry's start and
  /// ec::io_error (naming the file and the errno text) is returned; the
  /// journal stays usable, as it does when creating the next segment fails.
  /// When that truncation fails too, or a roll fails after creating the next
  /// segment (a directory fsync, the trailer's write or fsync), the journal
  /// is failed: every later change returns the error (reopening repairs).
  caf::error append(const block_record& record);

  /// fdatasyncs the active segment. Everything appended so far is durable
  /// when this returns no error. Returns ec::io_error on failure, and the
  /// journal is failed from then on: every later change (sync included)
  /// returns the same error, since a retried fsync may succeed without the
  /// data the kernel dropped (fsyncgate).
  caf::error sync();

  /// Returns whether the journal holds no entry.
  bool empty() const;

  /// Returns the height of the newest entry. REQUIRES: !empty().
  block_id last_height() const;

  /// Returns the height of the oldest entry. REQUIRES: !empty().
  block_id first_height() const;

  /// Returns the position of every entry, oldest first.
  const std::vector<journal_position>& index() const;

  /// Reads and verifies the entry at `pos` (from index()). Returns
  /// ec::journal_corrupt naming file, offset and height when the bytes there
  /// no longer verify, ec::io_error when they cannot be read.
  caf::expected<block_record> read(const journal_position& pos) const;

  /// Reads and verifies every entry at or above `height`, oldest first.
  caf::expected<block_record_list> read_from(block_id height) const;

  /// Removes every entry above `height` (truncating and deleting segment
  /// files) and fsyncs the files and the directory. The segment keeping the
  /// newest entry at or below `height` is cut right after it (its trailer
  /// goes too) and becomes the active one. All or nothing across a crash:
  /// when later segments hold entries, a truncation record naming `height`
  /// is made durable first; then the later segments are emptied newest
  /// first (each fsynced), the kept one is cut and fsynced, and the emptied
  /// ones and the record are deleted. open() completes a truncation whose
  /// record it finds. A failure after the record was created fails the
  /// journal.
  caf::error truncate_after(block_id height);

  /// Returns the newest height H such that the whole segments holding only
  /// entries with heights <= H could be deleted while keeping every entry at
  /// or above `keep_from`. The active segment is never prunable. Returns
  /// nullopt when no segment qualifies.
  std::optional<block_id> prunable_through(block_id keep_from) const;

  /// Deletes every segment whose newest entry is <= `height` (oldest first),
  /// then fsyncs the directory. Segments are only removed whole.
  caf::error drop_through(block_id height);

  /// Returns the total size of the segment files in bytes.
  std::uint64_t size_bytes() const;

  /// Returns the directory.
  const std::filesystem::path& dir() const;

  /// Returns the path of segment `seq` (which need not exist).
  std::filesystem::path segment_path(std::uint64_t seq) const;

private:
  struct impl;
  explicit journal(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace rollblock::storage
