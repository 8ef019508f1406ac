#include "server/events.h"

#include <boost/asio/post.hpp>

#include "base/time.h"

namespace vireo::server {

void EventHub::publish(std::string type, Json metadata) {
  api::Event event{type, now_timestamp(), std::move(metadata)};
  auto frame = std::make_shared<const std::string>(dump_json(to_json(event)));
  boost::asio::post(io_, [this, type = std::move(type), frame] { deliver(type, frame); });
}

void EventHub::subscribe(std::weak_ptr<EventSubscriber> subscriber) {
  subscribers_.push_back(std::move(subscriber));
}

void EventHub::deliver(const std::string& type, std::shared_ptr<const std::string> frame) {
  std::erase_if(subscribers_, [](const auto& w) { return w.expired(); });
  for (const auto& weak : subscribers_) {
    auto sub = weak.lock();
    if (!sub) continue;
    const auto& types = sub->event_types();
    if (types.empty() || types.contains(type)) sub->deliver(frame);
  }
}

}  // namespace vireo::server
