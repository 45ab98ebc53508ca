// A stand-in broker for test_cli.py: binds a ROUTER on tcp://127.0.0.1:*, prints
// "endpoint EP" on stdout, answers STATUS requests with the canned report below (or
// with REFUSED when given `refuse REASON`), and exits after `answers` of them (default
// 1). Exits 3 if no request comes within 30 s, so a broken test cannot leave it behind.
//
// The canned values are repeated in test_cli.py (CANNED); change both together.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <zmq.hpp>

#include "common/protocol.hpp"
#include "mqpool/status.hpp"

namespace {

mqpool::BrokerStatus canned() {
  mqpool::BrokerStatus s;
  s.broker = 0x00c0ffee12345678;
  s.uptime_s = 3723.5;  // 1h02m
  mqpool::WorkerStatus a;
  a.host = "worker-host-with-a-name-far-too-long-for-any-column.cluster.example.internal";
  a.pid = 4242;
  a.executors = 8;
  a.busy = 3;
  a.tasks_done = 1234567;
  a.current_task = "linalg.norm";
  a.current_for_s = 2.25;
  a.connected_for_s = 312;  // 5m12s
  mqpool::WorkerStatus b;
  b.host = "w2";
  b.pid = 99;
  b.executors = 2;
  b.busy = 0;
  b.tasks_done = 7;
  b.current_task = "";  // idle
  b.connected_for_s = 42;
  b.draining = true;  // stopping: the table says so
  // A name that needs JSON escaping, with a control character the table must not print.
  mqpool::WorkerStatus c;
  c.host = "odd\"host\\\t";
  c.pid = 7;
  c.executors = 1;
  s.workers = {a, b, c};
  mqpool::ClientStatus client;
  client.name = "client-host:31337";
  client.queued = 1200;
  client.in_flight = 11;
  client.connected_for_s = 65;  // 1m05s
  s.clients = {client};
  s.queued = 1200;
  s.in_flight = 11;
  s.done = 53210;
  s.failed = 3;
  s.retried = 2;
  s.malformed = 1;
  s.duplicates = 4;
  s.tasks_per_s = 812.4;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int answers = 1;
  std::string refuse;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "answers") answers = std::atoi(argv[i + 1]);
    if (flag == "refuse") refuse = argv[i + 1];
  }
  zmq::context_t ctx;
  zmq::socket_t sock(ctx, zmq::socket_type::router);
  sock.set(zmq::sockopt::linger, 5000);  // the last answer still leaves after we return
  sock.bind("tcp://127.0.0.1:*");
  std::printf("endpoint %s\n", sock.get(zmq::sockopt::last_endpoint).c_str());
  std::fflush(stdout);
  for (int done = 0; done < answers;) {
    zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::seconds(30)) == 0) return 3;
    auto m = mqpool::proto::recv(sock, true, zmq::recv_flags::dontwait);
    if (!m || m->cmd != mqpool::proto::Cmd::status) continue;
    if (refuse.empty())
      mqpool::proto::send(sock, mqpool::proto::make(mqpool::proto::Cmd::status, canned(), m->peer),
                          true);
    else
      mqpool::proto::send(
          sock,
          mqpool::proto::make(mqpool::proto::Cmd::refused, mqpool::proto::Bye{refuse}, m->peer),
          true);
    ++done;
  }
  return 0;
}
