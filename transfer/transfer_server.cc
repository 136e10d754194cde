#include "transfer/transfer_server.h"

namespace kvstash::transfer {

Result<std::unique_ptr<TransferServer>> TransferServer::Start(const UcxOptions& options, void* base,
                                                              size_t length) {
  std::unique_ptr<TransferServer> server(new TransferServer());
  UcxOptions with_wakeup = options;
  with_wakeup.wakeup = true;
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(with_wakeup));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Register(server->context_, base, length));
  KVSTASH_ASSIGN_OR_RETURN(server->worker_, UcxWorker::Create(server->context_));
  server->worker_address_ = server->worker_->address();
  server->transports_ = options.transports.empty() ? "default" : options.transports;
  TransferServer* raw = server.get();
  server->thread_ = std::thread([raw] { raw->ProgressLoop(); });
  return server;
}

Result<std::unique_ptr<TransferServer>> TransferServer::StartAllocated(const UcxOptions& options, size_t length) {
  std::unique_ptr<TransferServer> server(new TransferServer());
  UcxOptions with_wakeup = options;
  with_wakeup.wakeup = true;
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(with_wakeup));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Allocate(server->context_, length));
  KVSTASH_ASSIGN_OR_RETURN(server->worker_, UcxWorker::Create(server->context_));
  server->worker_address_ = server->worker_->address();
  server->transports_ = options.transports.empty() ? "default" : options.transports;
  TransferServer* raw = server.get();
  server->thread_ = std::thread([raw] { raw->ProgressLoop(); });
  return server;
}

TransferServer::~TransferServer() {
  Stop();
  worker_.reset();  // endpoints first, then the registration, then the context
  region_.reset();
}

void TransferServer::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  worker_->Signal();
  thread_.join();
}

void TransferServer::ProgressLoop() {
  while (!stop_.load(std::memory_order_acquire)) {
    while (worker_->Progress() > 0) {
    }
    // Sleeps until a peer needs us. Shared-memory transports raise no wakeup events, so the
    // timeout bounds how long their messages (connection setup, emulated operations) wait.
    (void)worker_->WaitForEvent(5);
  }
}

}  // namespace kvstash::transfer
