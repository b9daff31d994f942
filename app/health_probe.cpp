#include "health_probe.hpp"

#include <httplib.h>

namespace rollblock {

health_probe_result probe_health(const std::string& host, std::uint16_t port,
                                 std::chrono::seconds timeout) {
  auto where = host + ":" + std::to_string(port);
  httplib::Client client{host, port};
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  auto res = client.Get("/health");
  if (!res)
    return {3, "unreachable: no answer from " + where + " ("
                 + httplib::to_string(res.error()) + ")"};
  auto line = res->body;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.pop_back();
  auto state = line.substr(0, line.find(' '));
  if (res->status == 200 && state == "serving")
    return {0, line};
  if (res->status == 503 && state == "degraded")
    return {1, line};
  if (res->status == 503 && state == "fatal")
    return {2, line};
  return {3, "unreachable: " + where + " answered HTTP "
               + std::to_string(res->status) + " '" + line
               + "', not a rollblockd health report"};
}

} // namespace rollblock
