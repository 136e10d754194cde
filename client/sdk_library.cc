// libkvstash.so: the installable SDK (client/CMakeLists.txt). The library is the client and the
// vocabulary of common/ linked whole, exporting only kvstash:: symbols (client/libkvstash.map).
#include "kvstash/version.h"

namespace kvstash {

const char* LibraryVersion() { return KVSTASH_VERSION_STRING; }

}  // namespace kvstash
