#pragma once

#include "support/fault_schedule.hpp"

#include <leveldb/env.h>

namespace rollblock::test {

/// A leveldb::Env over leveldb::Env::Default() that breaks the calls its
/// schedule names: file writes (WritableFile::Append: the write-ahead log,
/// tables, the manifest), syncs, creations of writable files and removals.
/// A failed write writes nothing (a write cut by fail_writes_after writes
/// the part below the limit, then fails: a short write); a crash raises
/// SIGKILL (for crash-point tests in a child process). Pass it as
/// store_options::leveldb_env; it must outlive the store.
class fault_env : public leveldb::EnvWrapper {
public:
  fault_env();

  /// The faults to inject; change it at any time.
  fault_schedule& schedule() {
    return schedule_;
  }

  leveldb::Status NewWritableFile(const std::string& fname,
                                  leveldb::WritableFile** result) override;
  leveldb::Status NewAppendableFile(const std::string& fname,
                                    leveldb::WritableFile** result) override;
  leveldb::Status RemoveFile(const std::string& fname) override;

private:
  fault_schedule schedule_;
};

} // namespace rollblock::test
