#include "server/eager_put_sink.h"

#include "server/request_validation.h"

namespace kvstash::server {

Result<transfer::PutSink::Space> EagerPutSink::Reserve(const transfer::EagerPut& put,
                                                        std::chrono::milliseconds timeout) {
  KVSTASH_RETURN_IF_ERROR(CheckBlockSize(put.size, max_block_bytes_, "size"));
  Result<tiers::Reservation> reservation =
      tier_.Reserve(put.key, put.size, put.parent, static_cast<uint64_t>(timeout.count()));
  if (!reservation.ok()) {
    if (reservation.status().code() == StatusCode::kAlreadyExists) metrics_.RecordPuts(0, 1);
    return reservation.status();
  }
  return Space{reservation->data, reservation->id};
}

Status EagerPutSink::Commit(const transfer::EagerPut& put, uint64_t reservation_id) {
  // The tier re-hashes the reserved region and refuses a mismatch (counted in
  // kvstash_checksum_mismatches_total), leaving the reservation open: give it back then.
  Result<tiers::BlockMeta> committed = tier_.Commit(reservation_id, put.checksum, put.pin);
  if (!committed.ok()) {
    (void)tier_.Abort(reservation_id);  // nothing of a refused put stays, whatever the reason
    if (committed.status().code() == StatusCode::kNotFound) {
      return NotFound("the put's reservation expired before its bytes arrived");
    }
    return committed.status();
  }
  if (put.advice) {
    (void)tier_.Advise(put.key, *put.advice);
    metrics_.RecordAdvice(*put.advice, 1);
  }
  metrics_.RecordPuts(1, 0);
  metrics_.RecordPutBytesTwoSided(put.size);
  return Status::Ok();
}

void EagerPutSink::Abort(uint64_t reservation_id) { (void)tier_.Abort(reservation_id); }

}  // namespace kvstash::server
