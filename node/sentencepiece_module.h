// The C interface of libkvstash_sentencepiece.so, the one place SentencePiece is linked.
//
// Why a module: Debian's libsentencepiece carries its own copy of protobuf-lite (3.14) and exports
// its symbols; in a process that also links the system's protobuf (3.21, through gRPC) the two
// copies bind to each other's symbols and the process aborts at start ("compiled against version
// 3.14.0") or crashes. node/tokenizer.cc therefore dlopens this module with RTLD_LOCAL |
// RTLD_DEEPBIND, so that SentencePiece resolves protobuf in its own copy and the rest of the
// process never sees it. Only plain C types cross the boundary.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

// Every function that can fail returns 0 on success, or -1 with a message in err[0, err_len).

// A loaded processor (opaque), or null with the reason in err.
typedef void* (*kvstash_spm_load_fn)(const char* path, char* err, size_t err_len);
typedef void (*kvstash_spm_free_fn)(void* processor);
// Pieces in the vocabulary; the id of BOS / EOS, or -1 when the model has none.
typedef int32_t (*kvstash_spm_info_fn)(void* processor, int32_t* vocab_size, int32_t* bos, int32_t* eos);
// Encodes text[0, len) into *ids (malloc'd, *n of them; free with kvstash_spm_release).
typedef int32_t (*kvstash_spm_encode_fn)(void* processor, const char* text, size_t len, int32_t** ids, size_t* n,
                                         char* err, size_t err_len);
// Decodes ids (each within the vocabulary) into *text (malloc'd, *len bytes; free with kvstash_spm_release).
typedef int32_t (*kvstash_spm_decode_fn)(void* processor, const int32_t* ids, size_t n, char** text, size_t* len,
                                         char* err, size_t err_len);
typedef void (*kvstash_spm_release_fn)(void* buffer);

}  // extern "C"
