#pragma once
// Runs an io_context on a thread for the duration of a test.
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <future>

namespace vireo::server {

class TestIo {
 public:
  TestIo() : work_(boost::asio::make_work_guard(io)), thread_([this] { io.run(); }) {}
  ~TestIo() {
    work_.reset();
    io.stop();
    thread_.join();
  }
  // Runs f on the io thread and waits for it.
  template <class F>
  void sync(F f) {
    std::promise<void> done;
    boost::asio::post(io, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
  boost::asio::io_context io;

 private:
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace vireo::server
