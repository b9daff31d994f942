// libFuzzer target: the journal entry decoder (decode_journal_entry in
// storage/rollblock/storage/journal.hpp).
//
// Input: byte 0 bit 0 asks for the entry's checksums to be rewritten first
// (journal_bytes.hpp), so mutations get past them; byte 1 picks the key width
// (8..64); the rest is the entry. The entry is decoded as a block
// (decode_journal_entry) and as a segment trailer (decode_journal_trailer).
// Checked: each decoding ends in its result or in a precise rollblock error
// (journal_corrupt, format_version_mismatch or config_mismatch) with a
// message; at most one of them succeeds; a decoded record has keys of the
// width, a decoded block or trailer re-encodes to exactly the input bytes.

#include "journal_bytes.hpp"

#include "rollblock/messages/error.hpp"
#include "rollblock/storage/journal.hpp"

#include <cstdio>
#include <cstdlib>

using namespace rollblock;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "journal_entry_fuzz: invariant violated: %s\n",
                 what);
    std::abort();
  }
}

void check_error(const caf::error& err) {
  auto code = code_of(err);
  check(code == ec::journal_corrupt || code == ec::format_version_mismatch
          || code == ec::config_mismatch,
        "an error code other than journal_corrupt, "
        "format_version_mismatch or config_mismatch");
  check(!message_of(err).empty(), "an error without a message");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  if (size < 2)
    return 0;
  auto width = min_key_width + data[1] % (max_key_width - min_key_width + 1);
  std::string entry{reinterpret_cast<const char*>(data) + 2, size - 2};
  if (data[0] & 1)
    fuzz::fix_journal_checksums(entry);
  auto trailer = storage::decode_journal_trailer(entry, width);
  if (!trailer)
    check_error(trailer.error());
  else
    check(storage::encode_journal_trailer(*trailer, width) == entry,
          "a decoded trailer does not re-encode to its bytes");
  auto decoded = storage::decode_journal_entry(entry, width);
  if (!decoded) {
    check_error(decoded.error());
    return 0;
  }
  check(!trailer, "an entry decodes both as a block and as a trailer");
  for (auto change : decoded->changes) {
    check(change.k.size() == width, "a decoded key of another width");
    check(change.after.size() <= max_value_size
            && change.before.size() <= max_value_size,
          "a decoded value above max_value_size");
  }
  check(storage::encode_journal_entry(*decoded, width) == entry,
        "a decoded entry does not re-encode to its bytes");
  return 0;
}
