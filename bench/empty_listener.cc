// empty_listener: the ceiling for the sidecar's HTTP figures. A cpprestsdk http_listener that
// answers every request with a small 201 JSON body, with the same thread pool size the sidecar
// uses, so the difference to the sidecar is exactly the sidecar's own work.
//
// Usage: empty_listener HOST:PORT [THREADS]
#include <cpprest/http_listener.h>
#include <pplx/threadpool.h>
#include <signal.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: empty_listener HOST:PORT [THREADS]\n";
    return 2;
  }
  crossplat::threadpool::initialize_with_threads(argc > 2 ? std::atoi(argv[2]) : 2);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  web::http::experimental::listener::http_listener listener(
      web::uri(std::string("http://") + argv[1]));
  listener.support([](web::http::http_request r) {
    // Read the body like the sidecar must, then answer.
    r.extract_vector().then([r](pplx::task<std::vector<unsigned char>> body) {
      body.get();
      web::http::http_response resp(web::http::status_codes::Created);
      resp.set_body(
          std::string(
              R"({"stream":"bench","entity":"e","fromVersion":1,"version":1,"position":1,"events":[]})"),
          "application/json");
      r.reply(resp);
    });
  });
  listener.open().wait();
  std::cout << "ready" << std::endl;
  int sig;
  sigwait(&signals, &sig);
  listener.close().wait();
  return 0;
}
