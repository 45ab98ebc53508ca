// A client inside the broker's own process (a local pool), served without a socket:
// the broker thread takes its submissions and hands it its results directly, which
// saves two thread hand-offs on every round trip.
#pragma once

#include <string>
#include <vector>

#include "common/protocol.hpp"

namespace mqpool::broker {

// The routing id that stands for the local client. ZeroMQ's own ids are 5 bytes and
// custom ones may not start with a zero byte, so this one cannot collide.
inline const std::string kLocalPeer(1, '\0');

class LocalClient {
 public:
  virtual ~LocalClient() = default;
  // Readable when the client has messages for the broker.
  virtual int wake_fd() const = 0;
  // Moves the waiting messages (SUBMIT, CANCEL) into `out`. Returns false once the client
  // has stopped. Off the loop's thread (`loop_thread` false: a submitter serving itself),
  // it also returns false, taking nothing, when what waits must be handled on the loop's
  // thread (failing jobs runs their callbacks).
  virtual bool take(std::vector<proto::Message>& out, bool loop_thread) = 0;
  // A message for the client (RESULT). Throws SerializationError if malformed.
  virtual void deliver(proto::Message& m) = 0;
};

}  // namespace mqpool::broker
