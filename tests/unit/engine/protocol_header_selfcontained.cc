// Compiles mk/engine/protocol.h with nothing before it (g++ -Wall -Wextra -Werror).
#include "mk/engine/protocol.h"

static_assert(mk::protocol::kSlotBytes == 64);
