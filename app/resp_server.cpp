#include "resp_server.hpp"

#include "resp_parser.hpp"

#include "rollblock/messages/error.hpp"

#include <caf/io/broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/multiplexer.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <fmt/format.h>
#include "rollblock/storage/logger.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>

#ifndef ROLLBLOCK_VERSION
#define ROLLBLOCK_VERSION "unknown"
#endif

namespace rollblock {

namespace {

using listen_atom = caf::atom_constant<caf::atom("rlisten")>;
using resume_atom = caf::atom_constant<caf::atom("rresume")>;

/// Bytes read from a socket at a time.
constexpr std::size_t read_chunk = 64 * 1024;
/// Reply slots queued on one connection before it stops being read, and the
/// level at which reading resumes.
constexpr std::size_t max_queued_slots = 4096;
constexpr std::size_t resume_queued_slots = 1024;

using buffer = std::vector<char>;

// -- RESP replies -------------------------------------------------------------

void put(buffer& out, std::string_view x) {
  out.insert(out.end(), x.begin(), x.end());
}

template <class Int>
void put_number(buffer& out, Int x) {
  char tmp[24];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof(tmp), x);
  (void) ec;
  out.insert(out.end(), tmp, end);
}

/// Replaces CR and LF, which would end a simple string or error early.
std::string sanitized(std::string_view x) {
  std::string result{x};
  for (auto& c : result)
    if (c == '\r' || c == '\n')
      c = ' ';
  return result;
}

void put_simple(buffer& out, std::string_view x) {
  out.push_back('+');
  put(out, x);
  put(out, "\r\n");
}

/// `text` starts with the error code, e.g. "ERR ..." or "NOAUTH ...".
void put_error(buffer& out, std::string_view text) {
  out.push_back('-');
  put(out, sanitized(text));
  put(out, "\r\n");
}

void put_integer(buffer& out, std::uint64_t x) {
  out.push_back(':');
  put_number(out, x);
  put(out, "\r\n");
}

void put_bulk(buffer& out, std::string_view x) {
  out.push_back('$');
  put_number(out, x.size());
  put(out, "\r\n");
  put(out, x);
  put(out, "\r\n");
}

void put_nil(buffer& out) {
  put(out, "$-1\r\n");
}

void put_array(buffer& out, std::size_t n) {
  out.push_back('*');
  put_number(out, n);
  put(out, "\r\n");
}

/// A value as a reply: nil when absent (empty).
void put_value(buffer& out, std::string_view v) {
  if (v.empty())
    put_nil(out);
  else
    put_bulk(out, v);
}

void put_store_error(buffer& out, const caf::error& err) {
  put_error(out, "ERR " + describe(err));
}

// -- commands -----------------------------------------------------------------

std::string lower(std::string_view x) {
  std::string result{x};
  for (auto& c : result)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return result;
}

bool parse_u64(std::string_view x, std::uint64_t& out) {
  if (x.empty())
    return false;
  auto [end, ec] = std::from_chars(x.data(), x.data() + x.size(), out);
  return ec == std::errc{} && end == x.data() + x.size();
}

/// Compares a password in time independent of where it differs (and of the
/// secret's length): the loop runs over the attacker's input only.
bool password_matches(std::string_view given, std::string_view secret) {
  if (secret.empty())
    return given.empty();
  volatile unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < given.size(); ++i)
    diff = diff | static_cast<unsigned char>(given[i] ^ secret[i % secret.size()]);
  return diff == 0;
}

/// A key as the store wants it: a shorter one zero-padded on the right. A
/// longer one is passed on, so the store refuses it with its own error.
key make_key(std::string_view raw, std::size_t width) {
  key k{raw};
  if (k.size() < width)
    k.resize(width, '\0');
  return k;
}

enum class command_id {
  ping,
  auth,
  quit,
  get,
  mget,
  apply,
  pop,
  revert,
  heights,
  flush,
  relaxed,
  strict,
  info,
  unknown,
};

struct command_info {
  command_id id;
  const char* name; // lower case, for error texts
  int arity;        // > 0: exactly; < 0: at least -arity
};

const command_info& lookup(std::string_view name) {
  static const command_info table[] = {
    {command_id::ping, "ping", -1},
    {command_id::auth, "auth", -2},
    {command_id::quit, "quit", -1},
    {command_id::get, "get", 2},
    {command_id::mget, "mget", -2},
    {command_id::apply, "block.apply", -2},
    {command_id::pop, "block.pop", 3},
    {command_id::revert, "block.revert", 2},
    {command_id::heights, "block.heights", 1},
    {command_id::flush, "block.flush", 1},
    {command_id::relaxed, "block.relaxed", 2},
    {command_id::strict, "block.strict", 1},
    {command_id::info, "info", -1},
  };
  static const command_info unknown{command_id::unknown, "", 0};
  for (auto& x : table) {
    std::string_view n{x.name};
    if (name.size() != n.size())
      continue;
    bool same = true;
    for (std::size_t i = 0; i < n.size() && same; ++i) {
      char c = name[i];
      if (c >= 'A' && c <= 'Z')
        c = static_cast<char>(c - 'A' + 'a');
      same = c == n[i];
    }
    if (same)
      return x;
  }
  return unknown;
}

// -- server state -------------------------------------------------------------

/// One reply in a connection's queue, in command order.
struct reply_slot {
  enum class kind : std::uint8_t {
    /// `bytes` is the reply.
    ready,
    /// Waiting for the store's answer.
    pending,
    /// A read that must wait for the writes before it (`read`).
    deferred_read,
    /// A store request behind a deferred read (`send`).
    deferred_store,
  };
  kind state = kind::ready;
  /// Close the connection once this reply is written.
  bool close_after = false;
  /// Bytes this slot accounts for (request size while pending or deferred).
  std::size_t cost = 0;
  buffer bytes;
  std::function<void(buffer&)> read;
  std::function<void(std::uint64_t seq)> send;
};

struct client {
  std::uint64_t id = 0;
  caf::io::connection_handle hdl;
  std::unique_ptr<resp_parser> parser;
  bool authenticated = false;
  /// QUIT or a protocol error: no more requests are read.
  bool closing = false;
  std::deque<reply_slot> slots;
  /// The sequence number of slots.front().
  std::uint64_t first_seq = 0;
  std::size_t pending = 0;
  std::size_t deferred = 0;
  std::size_t queued_bytes = 0;
  bool halted_output = false;
  bool reading_halted = false;
  bool resume_posted = false;
};

struct server_state {
  std::optional<store_handle> store; // set when the broker starts
  resp_server_options opts;
  std::unordered_map<caf::io::connection_handle, std::unique_ptr<client>>
    clients;
  std::unordered_map<std::uint64_t, client*> by_id;
  std::uint64_t next_id = 1;
  std::optional<caf::io::accept_handle> doorman;
  std::uint16_t port = 0;
  bool closed = false;
  std::chrono::steady_clock::time_point started =
    std::chrono::steady_clock::now();
  std::uint64_t total_connections = 0;
  std::uint64_t rejected_connections = 0;
  std::uint64_t total_commands = 0;
  std::uint64_t protocol_errors = 0;

  static inline const char* name = "rollblock.resp_server";
};

using broker_ptr = caf::io::stateful_broker<server_state>*;

// -- INFO -----------------------------------------------------------------------

void put_latency(std::string& out, const char* name, const latency_summary& x) {
  fmt::format_to(std::back_inserter(out),
                 "{0}_count:{1}\r\n{0}_avg_us:{2:.1f}\r\n{0}_p50_us:{3:.1f}\r\n"
                 "{0}_p95_us:{4:.1f}\r\n{0}_p99_us:{5:.1f}\r\n",
                 name, x.count, x.avg_us, x.p50_us, x.p95_us, x.p99_us);
}

/// `sections`: lower-case names; empty for all.
std::string info_text(const server_state& st, const metrics_snapshot& m,
                      const std::vector<std::string>& sections) {
  auto wanted = [&](std::string_view name) {
    if (sections.empty())
      return true;
    for (auto& s : sections)
      if (s == name || s == "all" || s == "default" || s == "everything")
        return true;
    return false;
  };
  std::string out;
  auto it = std::back_inserter(out);
  auto section = [&](const char* title) {
    if (!out.empty())
      out += "\r\n";
    fmt::format_to(it, "# {}\r\n", title);
  };
  if (wanted("server")) {
    section("Server");
    auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now() - st.started)
                    .count();
    fmt::format_to(it,
                   "rollblock_version:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\n"
                   "uptime_in_seconds:{}\r\nkey_width:{}\r\ndurability:{}\r\n",
                   ROLLBLOCK_VERSION, static_cast<long>(::getpid()), st.port,
                   uptime, st.store->reader.key_width(),
                   to_string(m.durability));
  }
  if (wanted("heights")) {
    section("Heights");
    fmt::format_to(it,
                   "applied_height:{}\r\ndurable_height:{}\r\n"
                   "current_height:{}\r\n",
                   m.heights.applied, m.heights.durable, m.heights.current);
  }
  if (wanted("stats")) {
    section("Stats");
    fmt::format_to(it,
                   "connected_clients:{}\r\nmax_clients:{}\r\n"
                   "total_connections_received:{}\r\n"
                   "rejected_connections:{}\r\n"
                   "total_commands_processed:{}\r\nprotocol_errors:{}\r\n",
                   st.clients.size(), st.opts.max_clients,
                   st.total_connections, st.rejected_connections,
                   st.total_commands, st.protocol_errors);
    fmt::format_to(it,
                   "blocks_applied:{}\r\noperations_applied:{}\r\nsets:{}\r\n"
                   "deletes:{}\r\nreverts:{}\r\nblocks_reverted:{}\r\n"
                   "lookups:{}\r\nclient_errors:{}\r\nchecksum_errors:{}\r\n"
                   "checkpoints:{}\r\nlive_keys:{}\r\n"
                   "state_table_bytes:{}\r\njournal_bytes:{}\r\n"
                   "held_blocks:{}\r\nheld_bytes:{}\r\n",
                   m.blocks_applied, m.operations_applied, m.sets, m.deletes,
                   m.reverts, m.blocks_reverted, m.lookups, m.client_errors,
                   m.checksum_errors, m.checkpoints, m.live_keys,
                   m.state_table_bytes, m.journal_bytes, m.held_blocks,
                   m.held_bytes);
    put_latency(out, "apply_latency", m.apply_latency);
    put_latency(out, "revert_latency", m.revert_latency);
    put_latency(out, "lookup_latency", m.lookup_latency);
  }
  if (wanted("health")) {
    section("Health");
    fmt::format_to(it,
                   "health:{}\r\nhealth_reason:{}\r\nmutation_restarts:{}\r\n"
                   "journal_restarts:{}\r\npersistence_restarts:{}\r\n"
                   "health_restarts:{}\r\n",
                   to_string(m.health), sanitized(m.health_reason),
                   m.mutation_restarts, m.journal_restarts,
                   m.persistence_restarts, m.health_restarts);
  }
  return out;
}

// -- connections ----------------------------------------------------------------

client* find(broker_ptr self, std::uint64_t id) {
  auto i = self->state.by_id.find(id);
  return i == self->state.by_id.end() ? nullptr : i->second;
}

void erase(broker_ptr self, client& c) {
  auto hdl = c.hdl;
  self->state.by_id.erase(c.id);
  self->state.clients.erase(hdl); // destroys c
}

/// Where a reply that is ready now goes: straight out when nothing waits
/// before it, else into a ready slot at the end of the queue.
buffer& out_for(broker_ptr self, client& c) {
  if (c.slots.empty())
    return self->wr_buf(c.hdl);
  auto& back = c.slots.back();
  if (back.state == reply_slot::kind::ready && !back.close_after)
    return back.bytes;
  c.slots.emplace_back();
  return c.slots.back().bytes;
}

/// Queues a reply that closes the connection once written.
void close_after(client& c, buffer bytes) {
  c.closing = true;
  auto& s = c.slots.emplace_back();
  s.bytes = std::move(bytes);
  s.close_after = true;
}

std::uint64_t push_pending(client& c, std::size_t cost) {
  auto seq = c.first_seq + c.slots.size();
  auto& s = c.slots.emplace_back();
  s.state = reply_slot::kind::pending;
  s.cost = cost;
  ++c.pending;
  c.queued_bytes += cost;
  return seq;
}

void update_reading(broker_ptr self, client& c) {
  bool queue_full = c.slots.size() > max_queued_slots ||
                    c.queued_bytes > self->state.opts.max_buffer;
  bool queue_low = c.slots.size() <= resume_queued_slots &&
                   c.queued_bytes <= self->state.opts.max_buffer / 4;
  if (!c.reading_halted) {
    if (c.halted_output || queue_full) {
      self->halt(c.hdl);
      c.reading_halted = true;
    }
    return;
  }
  if (c.halted_output || !queue_low || c.resume_posted || c.closing)
    return;
  // Resume in a later loop iteration: CAF 0.17 loses a trigger() issued in
  // the same iteration as the halt().
  c.resume_posted = true;
  auto me = caf::actor_cast<caf::actor>(self);
  auto id = c.id;
  self->backend().post(
    [me, id] { caf::anon_send(me, resume_atom::value, id); });
}

/// Returns whether too many reply bytes wait for this client. Then it is
/// marked halted_output: nothing more is read, parsed or run for it until
/// the socket drains (data_transferred_msg).
bool output_full(broker_ptr self, client& c) {
  auto limit = self->state.opts.max_output_buffer;
  if (self->wr_buf(c.hdl).size() <= limit)
    return false;
  // Starts a write if none runs; then the bytes leave wr_buf.
  self->flush(c.hdl);
  if (self->wr_buf(c.hdl).size() <= limit)
    return false;
  if (!c.halted_output) {
    c.halted_output = true;
    self->ack_writes(c.hdl, true);
  }
  return true;
}

/// Flushes a connection and applies back-pressure.
void finish_io(broker_ptr self, client& c) {
  self->flush(c.hdl);
  output_full(self, c);
  update_reading(self, c);
}

void send_slot(client& c, std::size_t index) {
  auto& s = c.slots[index];
  s.state = reply_slot::kind::pending;
  --c.deferred;
  ++c.pending;
  auto send = std::move(s.send);
  s.send = nullptr;
  send(c.first_seq + index);
}

/// Writes every reply at the head of the queue that is ready, running
/// deferred reads once the writes before them are answered. Returns false
/// when the connection was closed (and `c` destroyed).
bool drain(broker_ptr self, client& c) {
  while (!c.slots.empty()) {
    auto& s = c.slots.front();
    switch (s.state) {
      case reply_slot::kind::ready: {
        auto& out = self->wr_buf(c.hdl);
        out.insert(out.end(), s.bytes.begin(), s.bytes.end());
        bool close = s.close_after;
        c.slots.pop_front();
        ++c.first_seq;
        if (close) {
          self->flush(c.hdl);
          self->close(c.hdl);
          erase(self, c);
          return false;
        }
        break;
      }
      case reply_slot::kind::pending:
        return true;
      case reply_slot::kind::deferred_read: {
        if (output_full(self, c))
          return true;
        --c.deferred;
        c.queued_bytes -= s.cost;
        auto read = std::move(s.read);
        c.slots.pop_front();
        ++c.first_seq;
        read(self->wr_buf(c.hdl));
        break;
      }
      case reply_slot::kind::deferred_store: {
        send_slot(c, 0);
        // The store requests right behind it need not wait either.
        for (std::size_t i = 1; i < c.slots.size(); ++i) {
          auto k = c.slots[i].state;
          if (k == reply_slot::kind::deferred_read)
            break;
          if (k == reply_slot::kind::deferred_store)
            send_slot(c, i);
        }
        return true;
      }
    }
  }
  return true;
}

/// Stores the store's answer for slot `seq` of connection `id`.
void complete(broker_ptr self, std::uint64_t id, std::uint64_t seq,
              buffer bytes) {
  auto c = find(self, id);
  if (c == nullptr)
    return; // the client is gone
  auto index = seq - c->first_seq;
  if (index >= c->slots.size())
    return;
  auto& s = c->slots[index];
  s.bytes = std::move(bytes);
  s.state = reply_slot::kind::ready;
  --c->pending;
  c->queued_bytes -= s.cost;
  s.cost = 0;
  if (index == 0 && drain(self, *c))
    finish_io(self, *c);
}

auto on_store_error(broker_ptr self, std::uint64_t id, std::uint64_t seq) {
  return [self, id, seq](caf::error& err) {
    buffer out;
    put_store_error(out, err);
    complete(self, id, seq, std::move(out));
  };
}

/// Sends one request to the store and completes reply slot `seq` of
/// connection `id` with `render(out, result)`, or with the store's error.
template <class Result, class Render, class... Ts>
void ask_store(broker_ptr self, std::uint64_t id, std::uint64_t seq,
               Render render, Ts&&... xs) {
  self
    ->request(self->state.store->actor, caf::infinite,
              std::forward<Ts>(xs)...)
    .then(
      [self, id, seq, render](Result& result) {
        buffer out;
        render(out, result);
        complete(self, id, seq, std::move(out));
      },
      on_store_error(self, id, seq));
}

/// Renders an integer reply.
void put_height(buffer& out, block_id h) {
  put_integer(out, h);
}

/// Renders +OK for a policy switch.
void put_ok(buffer& out, const durability_mode&) {
  put_simple(out, "OK");
}

/// Runs a read now, or queues it behind the writes it must see.
template <class F>
void submit_read(broker_ptr self, client& c, std::size_t cost, F&& f) {
  if (c.pending == 0 && c.deferred == 0) {
    f(out_for(self, c));
    return;
  }
  auto& s = c.slots.emplace_back();
  s.state = reply_slot::kind::deferred_read;
  s.cost = cost;
  s.read = std::forward<F>(f);
  ++c.deferred;
  c.queued_bytes += cost;
}

/// Sends a request to the store now, or queues it behind a deferred read.
/// `send(seq)` makes the request and completes slot `seq` with the answer.
template <class F>
void submit_store(client& c, std::size_t cost, F&& send) {
  if (c.deferred == 0) {
    auto seq = push_pending(c, cost);
    send(seq);
    return;
  }
  auto& s = c.slots.emplace_back();
  s.state = reply_slot::kind::deferred_store;
  s.cost = cost;
  s.send = std::forward<F>(send);
  ++c.deferred;
  c.queued_bytes += cost;
}

std::size_t size_of(const std::vector<std::string_view>& args) {
  std::size_t n = 0;
  for (auto& a : args)
    n += a.size() + 16;
  return n;
}

void reply_unknown(buffer& out, const std::vector<std::string_view>& args) {
  std::string text = "ERR unknown command '";
  text.append(args[0].substr(0, 128));
  text += "', with args beginning with: ";
  std::size_t used = 0;
  for (std::size_t i = 1; i < args.size() && used < 128; ++i) {
    auto part = args[i].substr(0, 128 - used);
    text += '\'';
    text.append(part);
    text += "' ";
    used += part.size() + 3;
  }
  put_error(out, text);
}

void reply_not_integer(buffer& out) {
  put_error(out, "ERR value is not an integer or out of range");
}

void do_get(broker_ptr self, const key& k, buffer& out) {
  auto v = self->state.store->reader.fetch(k);
  if (!v)
    put_store_error(out, v.error());
  else
    put_value(out, *v);
}

void do_mget(broker_ptr self, const std::vector<key>& keys, buffer& out) {
  auto vs = self->state.store->reader.fetch_many(keys);
  if (!vs) {
    put_store_error(out, vs.error());
    return;
  }
  put_array(out, vs->size());
  for (auto& v : *vs)
    put_value(out, v);
}

void do_heights(broker_ptr self, buffer& out) {
  auto h = self->state.store->reader.heights();
  put_array(out, 3);
  put_integer(out, h.applied);
  put_integer(out, h.durable);
  put_integer(out, h.current);
}

void on_command(broker_ptr self, client& c,
                const std::vector<std::string_view>& args) {
  auto& st = self->state;
  auto& info = lookup(args[0]);
  auto argc = static_cast<int>(args.size());
  if (!c.authenticated && info.id != command_id::auth &&
      info.id != command_id::ping && info.id != command_id::quit) {
    put_error(out_for(self, c), "NOAUTH Authentication required.");
    return;
  }
  if (info.id == command_id::unknown) {
    reply_unknown(out_for(self, c), args);
    return;
  }
  if ((info.arity > 0 && argc != info.arity) ||
      (info.arity < 0 && argc < -info.arity) ||
      (info.id == command_id::ping && argc > 2) ||
      (info.id == command_id::auth && argc > 3) ||
      (info.id == command_id::apply && argc % 2 != 0)) {
    put_error(out_for(self, c),
              fmt::format("ERR wrong number of arguments for '{}' command",
                          info.name));
    return;
  }
  auto id = c.id;
  auto width = st.store->reader.key_width();
  switch (info.id) {
    case command_id::ping:
      if (argc == 2)
        put_bulk(out_for(self, c), args[1]);
      else
        put_simple(out_for(self, c), "PONG");
      return;
    case command_id::auth: {
      if (!st.opts.password) {
        put_error(out_for(self, c),
                  "ERR AUTH <password> called without any password "
                  "configured for the default user. Are you sure your "
                  "configuration is correct?");
        return;
      }
      bool ok = password_matches(args.back(), *st.opts.password);
      if (argc == 3 && args[1] != "default")
        ok = false;
      if (ok) {
        c.authenticated = true;
        c.parser->set_authenticated(true);
        put_simple(out_for(self, c), "OK");
      } else {
        put_error(out_for(self, c), "WRONGPASS invalid username-password "
                                    "pair or user is disabled.");
      }
      return;
    }
    case command_id::quit: {
      buffer out;
      put_simple(out, "OK");
      close_after(c, std::move(out));
      return;
    }
    case command_id::get: {
      if (c.pending == 0 && c.deferred == 0) {
        // The hot path: no copy of the key when it has the full width.
        if (args[1].size() >= width) {
          thread_local key k;
          k.assign(args[1]);
          do_get(self, k, out_for(self, c));
        } else {
          do_get(self, make_key(args[1], width), out_for(self, c));
        }
        return;
      }
      submit_read(self, c, size_of(args),
                  [self, k = make_key(args[1], width)](buffer& out) {
                    do_get(self, k, out);
                  });
      return;
    }
    case command_id::mget: {
      std::vector<key> keys;
      keys.reserve(args.size() - 1);
      for (std::size_t i = 1; i < args.size(); ++i)
        keys.push_back(make_key(args[i], width));
      submit_read(self, c, size_of(args),
                  [self, keys = std::move(keys)](buffer& out) {
                    do_mget(self, keys, out);
                  });
      return;
    }
    case command_id::heights:
      submit_read(self, c, 16,
                  [self](buffer& out) { do_heights(self, out); });
      return;
    case command_id::apply: {
      block_id height = 0;
      if (!parse_u64(args[1], height)) {
        reply_not_integer(out_for(self, c));
        return;
      }
      operation_list ops;
      ops.reserve((args.size() - 2) / 2);
      for (std::size_t i = 2; i + 1 < args.size(); i += 2)
        ops.push_back(
          operation{make_key(args[i], width), value{args[i + 1]}});
      submit_store(
        c, size_of(args),
        [self, id, height, ops = std::move(ops)](std::uint64_t seq) mutable {
          ask_store<block_id>(self, id, seq, put_height, atom::apply::value,
                              height, std::move(ops));
        });
      return;
    }
    case command_id::pop: {
      block_id height = 0;
      if (!parse_u64(args[1], height)) {
        reply_not_integer(out_for(self, c));
        return;
      }
      submit_store(c, size_of(args),
                   [self, id, height,
                    k = make_key(args[2], width)](std::uint64_t seq) {
                     ask_store<value>(
                       self, id, seq,
                       [](buffer& out, const value& v) { put_value(out, v); },
                       atom::pop::value, height, k);
                   });
      return;
    }
    case command_id::revert: {
      block_id target = 0;
      if (!parse_u64(args[1], target)) {
        reply_not_integer(out_for(self, c));
        return;
      }
      submit_store(c, 64, [self, id, target](std::uint64_t seq) {
        ask_store<block_id>(self, id, seq, put_height, atom::revert::value,
                            target);
      });
      return;
    }
    case command_id::flush:
      submit_store(c, 64, [self, id](std::uint64_t seq) {
        ask_store<block_id>(self, id, seq, put_height, atom::flush::value);
      });
      return;
    case command_id::relaxed: {
      std::uint64_t n = 0;
      if (!parse_u64(args[1], n) || n > UINT32_MAX) {
        reply_not_integer(out_for(self, c));
        return;
      }
      submit_store(c, 64, [self, id, n](std::uint64_t seq) {
        ask_store<durability_mode>(self, id, seq, put_ok, atom::relaxed::value,
                                   static_cast<std::uint32_t>(n));
      });
      return;
    }
    case command_id::strict:
      submit_store(c, 64, [self, id](std::uint64_t seq) {
        ask_store<durability_mode>(self, id, seq, put_ok, atom::strict::value);
      });
      return;
    case command_id::info: {
      std::vector<std::string> sections;
      for (std::size_t i = 1; i < args.size(); ++i)
        sections.push_back(lower(args[i]));
      submit_store(c, 64,
                   [self, id, sections = std::move(sections)](
                     std::uint64_t seq) {
                     ask_store<metrics_snapshot>(
                       self, id, seq,
                       [self, sections](buffer& out,
                                        const metrics_snapshot& m) {
                         put_bulk(out, info_text(self->state, m, sections));
                       },
                       atom::metrics::value);
                   });
      return;
    }
    case command_id::unknown:
      break;
  }
}

/// Runs what a connection has ready: replies at the head of its queue, then
/// the requests its parser holds, until they run out, the connection closes
/// or too many reply bytes wait.
void run(broker_ptr self, client& c) {
  auto& st = self->state;
  if (!drain(self, c))
    return;
  auto& parser = *c.parser;
  while (!c.closing && !c.halted_output) {
    if (output_full(self, c)) {
      parser.retain();
      break;
    }
    auto r = parser.next();
    if (r == resp_parser::result::need_more)
      break;
    if (r == resp_parser::result::error) {
      ++st.protocol_errors;
      logger().debug("RESP client {}: {}; closing it", c.id, parser.error());
      buffer out;
      put_error(out, "ERR " + parser.error());
      close_after(c, std::move(out));
      break;
    }
    ++st.total_commands;
    on_command(self, c, parser.args());
  }
  if (drain(self, c))
    finish_io(self, c);
}

void on_data(broker_ptr self, client& c, const std::vector<char>& data) {
  c.parser->feed({data.data(), data.size()});
  if (c.halted_output) {
    // Read before the halt took effect: keep it for later.
    c.parser->retain();
    return;
  }
  run(self, c);
}

void close_everything(broker_ptr self) {
  auto& st = self->state;
  st.closed = true;
  if (st.doorman) {
    self->close(*st.doorman);
    st.doorman.reset();
  }
  for (auto& [hdl, c] : st.clients) {
    self->flush(hdl);
    self->close(hdl);
  }
  st.clients.clear();
  st.by_id.clear();
}

caf::behavior resp_broker(broker_ptr self, store_handle store,
                          resp_server_options opts) {
  self->state.store.emplace(std::move(store));
  self->state.opts = std::move(opts);
  return {
    [self](listen_atom) -> caf::result<std::uint16_t> {
      auto& st = self->state;
      auto& addr = st.opts.bind_address;
      auto res = self->add_tcp_doorman(st.opts.port,
                                       addr.empty() ? nullptr : addr.c_str(),
                                       true);
      if (!res)
        return std::move(res.error());
      st.doorman = res->first;
      st.port = res->second;
      return res->second;
    },
    [self](const caf::io::new_connection_msg& msg) {
      auto& st = self->state;
      if (st.closed || st.clients.size() >= st.opts.max_clients) {
        ++st.rejected_connections;
        buffer out;
        put_error(out, "ERR max number of clients reached");
        self->write(msg.handle, out.size(), out.data());
        self->flush(msg.handle);
        self->close(msg.handle);
        return;
      }
      ++st.total_connections;
      auto c = std::make_unique<client>();
      c->id = st.next_id++;
      c->hdl = msg.handle;
      c->authenticated = !st.opts.password.has_value();
      resp_limits limits;
      limits.max_buffer = st.opts.max_buffer;
      limits.max_bulk_length = st.opts.max_bulk_length;
      limits.max_elements = st.opts.max_elements;
      c->parser = std::make_unique<resp_parser>(limits);
      c->parser->set_authenticated(c->authenticated);
      st.by_id.emplace(c->id, c.get());
      st.clients.emplace(msg.handle, std::move(c));
      self->configure_read(msg.handle,
                           caf::io::receive_policy::at_most(read_chunk));
    },
    [self](const caf::io::new_data_msg& msg) {
      auto i = self->state.clients.find(msg.handle);
      if (i == self->state.clients.end() || i->second->closing)
        return;
      on_data(self, *i->second, msg.buf);
    },
    [self](const caf::io::data_transferred_msg& msg) {
      auto i = self->state.clients.find(msg.handle);
      if (i == self->state.clients.end())
        return;
      auto& c = *i->second;
      if (c.halted_output &&
          msg.remaining <= self->state.opts.max_output_buffer / 4) {
        c.halted_output = false;
        self->ack_writes(c.hdl, false);
        run(self, c);
      }
    },
    [self](resume_atom, std::uint64_t id) {
      auto c = find(self, id);
      if (c == nullptr)
        return;
      c->resume_posted = false;
      if (c->reading_halted && !c->halted_output && !c->closing) {
        c->reading_halted = false;
        self->trigger(c->hdl);
      }
      update_reading(self, *c);
    },
    [self](const caf::io::connection_closed_msg& msg) {
      auto i = self->state.clients.find(msg.handle);
      if (i != self->state.clients.end())
        erase(self, *i->second);
    },
    [self](const caf::io::connection_passivated_msg&) {
      // Only halt() passivates connections; resume_atom reactivates them.
    },
    [self](const caf::io::acceptor_closed_msg&) {
      if (!self->state.closed)
        logger().error("RESP server: the listening socket closed");
      self->state.doorman.reset();
    },
    [self](resp_atom::clients) {
      return static_cast<std::uint64_t>(self->state.clients.size());
    },
    [self](resp_atom::close_all) {
      close_everything(self);
      return caf::ok_atom::value;
    },
  };
}

} // namespace

caf::expected<resp_server> spawn_resp_server(caf::actor_system& sys,
                                             store_handle store,
                                             resp_server_options opts) {
  auto broker = sys.middleman().spawn_broker(resp_broker, std::move(store),
                                             std::move(opts));
  caf::scoped_actor self{sys};
  caf::expected<resp_server> result{caf::error{}};
  self->request(broker, std::chrono::seconds(30), listen_atom::value)
    .receive(
      [&](std::uint16_t port) {
        result = resp_server{broker, port};
      },
      [&](caf::error& err) { result = std::move(err); });
  if (!result)
    self->send_exit(broker, caf::exit_reason::user_shutdown);
  return result;
}

} // namespace rollblock
