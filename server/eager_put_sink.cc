#include "server/eager_put_sink.h"

#include "common/checksum.h"
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
  Result<tiers::Reservation> reservation = tier_.GetReservation(reservation_id);
  if (!reservation.ok()) return NotFound("the put's reservation expired before its bytes arrived");
  if (reservation->size != put.size ||
      BlockChecksum(reservation->data, reservation->size) != put.checksum) {
    (void)tier_.Abort(reservation_id);
    return DataLoss("block " + put.key.ToHex() + ": the bytes do not match checksum " + std::to_string(put.checksum));
  }
  Result<tiers::BlockMeta> committed = tier_.Commit(reservation_id, put.checksum, put.pin);
  if (!committed.ok()) return committed.status();  // only an expired reservation: nothing is left
  metrics_.RecordPuts(1, 0);
  metrics_.RecordPutBytesTwoSided(put.size);
  return Status::Ok();
}

void EagerPutSink::Abort(uint64_t reservation_id) { (void)tier_.Abort(reservation_id); }

}  // namespace kvstash::server
