#include "support/fault_env.hpp"

#include <cstring>
#include <memory>

namespace rollblock::test {

namespace {

leveldb::Status io_error(const std::string& fname, int err) {
  return leveldb::Status::IOError(fname, std::strerror(err));
}

class fault_writable_file final : public leveldb::WritableFile {
public:
  fault_writable_file(std::string fname, leveldb::WritableFile* base,
                      fault_schedule& s)
    : fname_(std::move(fname)), base_(base), schedule_(s) {
  }

  leveldb::Status Append(const leveldb::Slice& data) override {
    auto act = schedule_.next(fault_op::write, data.size());
    switch (act.kind) {
      case fault_action::proceed:
        return base_->Append(data);
      case fault_action::fail:
        return io_error(fname_, act.error);
      case fault_action::shorten: {
        // LevelDB has no short writes: the prefix lands, then ENOSPC.
        auto st = base_->Append(leveldb::Slice{data.data(), act.bytes});
        if (st.ok())
          st = base_->Flush();
        return st.ok() ? io_error(fname_, ENOSPC) : st;
      }
      case fault_action::crash:
        if (act.bytes > 0) {
          base_->Append(leveldb::Slice{data.data(), act.bytes});
          base_->Flush();
        }
        crash_process();
    }
    return {};
  }

  leveldb::Status Close() override {
    return base_->Close();
  }

  leveldb::Status Flush() override {
    return base_->Flush();
  }

  leveldb::Status Sync() override {
    auto act = schedule_.next(fault_op::sync);
    if (act.kind == fault_action::crash)
      crash_process();
    if (act.kind == fault_action::fail)
      return io_error(fname_, act.error);
    return base_->Sync();
  }

private:
  std::string fname_;
  std::unique_ptr<leveldb::WritableFile> base_;
  fault_schedule& schedule_;
};

} // namespace

fault_env::fault_env() : leveldb::EnvWrapper(leveldb::Env::Default()) {
}

leveldb::Status fault_env::NewWritableFile(const std::string& fname,
                                           leveldb::WritableFile** result) {
  auto act = schedule_.next(fault_op::create);
  if (act.kind == fault_action::crash)
    crash_process();
  if (act.kind == fault_action::fail)
    return io_error(fname, act.error);
  leveldb::WritableFile* base = nullptr;
  auto st = target()->NewWritableFile(fname, &base);
  if (st.ok())
    *result = new fault_writable_file(fname, base, schedule_);
  return st;
}

leveldb::Status fault_env::NewAppendableFile(const std::string& fname,
                                             leveldb::WritableFile** result) {
  leveldb::WritableFile* base = nullptr;
  auto st = target()->NewAppendableFile(fname, &base);
  if (st.ok())
    *result = new fault_writable_file(fname, base, schedule_);
  return st;
}

leveldb::Status fault_env::RemoveFile(const std::string& fname) {
  auto act = schedule_.next(fault_op::remove);
  if (act.kind == fault_action::crash)
    crash_process();
  if (act.kind == fault_action::fail)
    return io_error(fname, act.error);
  return target()->RemoveFile(fname);
}

} // namespace rollblock::test
