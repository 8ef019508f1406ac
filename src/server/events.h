#pragma once
// EventHub: fans events out to subscribers (WebSocket clients of /1.0/events). publish() may be
// called from any thread; delivery happens on the io thread, so subscribers need no locking.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "api/event.h"

namespace vireo::server {

class EventSubscriber {
 public:
  virtual ~EventSubscriber() = default;
  // Event types wanted ("lifecycle", "operation", "log"); empty means all.
  virtual const std::set<std::string>& event_types() const = 0;
  // Called on the io thread with the serialized event.
  virtual void deliver(std::shared_ptr<const std::string> frame) = 0;
};

class EventHub {
 public:
  explicit EventHub(boost::asio::io_context& io) : io_(io) {}

  void publish(std::string type, Json metadata);
  // Io thread only. The hub keeps a weak reference: a gone subscriber is dropped.
  void subscribe(std::weak_ptr<EventSubscriber> subscriber);

 private:
  void deliver(const std::string& type, std::shared_ptr<const std::string> frame);

  boost::asio::io_context& io_;
  std::vector<std::weak_ptr<EventSubscriber>> subscribers_;
};

}  // namespace vireo::server
