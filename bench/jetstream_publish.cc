// The raw JetStream publish ceiling for the sidecar's replicated appends: the same message an
// append publishes (a CloudEvents batch with Nats-Msg-Id), straight from the C client.
//
//   jetstream_publish URL STREAM SUBJECT_PREFIX PUBLISHERS SECONDS sync|async
//
// Creates STREAM (file storage, subjects SUBJECT_PREFIX>) if it does not exist: keep it apart
// from streams that sidecars follow, whose followers would take these messages for commits.
// sync:  each publisher thread publishes and waits for the PubAck, with
//        Nats-Expected-Last-Subject-Sequence as the sidecar sends it (each thread owns its
//        subjects and tracks their last sequence from the acks).
// async: one thread per publisher pipelines up to 256 publishes (js_PublishMsgAsync); no
//        expected sequence, since it cannot be known before the previous ack. asyncN: up to
//        N in flight instead (async16 is what 16 concurrent appends through one sidecar allow).
// Prints: RESULT <messages/s> <p50 ms> <p99 ms> <errors>   (latencies: sync only, else 0)
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

const char* kPayload =
    R"([{"specversion":"1.0","id":"0190b7c2-7d3e-7aa1-9c1e-2f3a4b5c6d7e","source":"sidelog://bench/bench","type":"PaymentReceived","subject":"e1","time":"2026-11-26T12:00:00.000000Z","datacontenttype":"application/json","data":{"amount":12.5,"currency":"EUR","note":"benchmark payload"},"sidelogversion":1}])";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr,
                 "usage: jetstream_publish URL STREAM SUBJECT_PREFIX PUBLISHERS SECONDS "
                 "sync|async|asyncN\n");
    return 2;
  }
  const std::string url = argv[1], prefix = argv[3];
  // "asyncN" is "async" with at most N publishes in flight.
  const std::string mode_arg = argv[6];
  const bool async = mode_arg.rfind("async", 0) == 0;
  const std::string mode = async ? "async" : mode_arg;
  const int window = async && mode_arg.size() > 5 ? std::atoi(mode_arg.c_str() + 5) : 256;
  const int publishers = std::atoi(argv[4]);
  const double seconds = std::atof(argv[5]);
  natsConnection* nc = nullptr;
  if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK) {
    std::fprintf(stderr, "cannot connect to %s\n", url.c_str());
    return 1;
  }
  {
    jsCtx* js = nullptr;
    natsConnection_JetStream(&js, nc, nullptr);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = argv[2];
    const std::string subjects = prefix + ">";
    const char* list[1] = {subjects.c_str()};
    cfg.Subjects = list;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo* si = nullptr;
    js_AddStream(&si, js, &cfg, nullptr, nullptr);  // an existing stream is fine
    if (si) jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
  }
  std::atomic<long> sent{0}, errors{0};
  std::mutex mu;
  std::vector<double> latencies;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(seconds));
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < publishers; ++t) {
    threads.emplace_back([&, t] {
      jsCtx* js = nullptr;
      jsOptions jo;
      jsOptions_Init(&jo);
      if (mode == "async") jo.PublishAsync.MaxPending = window;
      if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
        errors++;
        return;
      }
      std::map<std::string, uint64_t> last;  // subject -> last sequence (sync)
      std::vector<double> mine;
      long n = 0;
      const std::string run =
          std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
      while (Clock::now() < deadline) {
        const std::string subject =
            prefix + run + "-t" + std::to_string(t) + "-" + std::to_string(n % 64);
        const std::string id = run + "-" + std::to_string(t) + "-" + std::to_string(n);
        natsMsg* msg = nullptr;
        natsMsg_Create(&msg, subject.c_str(), nullptr, kPayload,
                       static_cast<int>(std::strlen(kPayload)));
        natsMsgHeader_Set(msg, "Nats-Msg-Id", id.c_str());
        natsMsgHeader_Set(msg, "Content-Type", "application/cloudevents-batch+json");
        if (mode == "sync") {
          const std::string expected = std::to_string(last[subject]);
          natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", expected.c_str());
          jsPubAck* pa = nullptr;
          auto t0 = Clock::now();
          natsStatus s = js_PublishMsg(&pa, js, msg, nullptr, nullptr);
          mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
          if (s == NATS_OK) {
            last[subject] = pa->Sequence;
            jsPubAck_Destroy(pa);
            sent++;
          } else {
            errors++;
          }
          natsMsg_Destroy(msg);
        } else {
          if (js_PublishMsgAsync(js, &msg, nullptr) == NATS_OK) {
            sent++;
          } else {
            errors++;
            natsMsg_Destroy(msg);
          }
        }
        ++n;
      }
      if (mode == "async") {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 10000;
        js_PublishAsyncComplete(js, &po);
        natsMsgList failed{};
        if (js_PublishAsyncGetPendingList(&failed, js) == NATS_OK) {
          errors += failed.Count;
          natsMsgList_Destroy(&failed);
        }
      }
      jsCtx_Destroy(js);
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0.0 : latencies[static_cast<size_t>(p * (latencies.size() - 1))];
  };
  // sync counts acknowledged publishes only; async counts queued ones, minus those never acked.
  const long ok = mode == "sync" ? sent.load() : sent.load() - errors.load();
  std::printf("RESULT %.0f %.3f %.3f %ld\n", static_cast<double>(ok) / elapsed, pct(0.5), pct(0.99),
              errors.load());
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}
