#pragma once

#include <caf/atom.hpp>
#include <caf/type_id.hpp>

/// The message tags of rollblock's actor interfaces (CAF 0.17 atoms, at most
/// ten characters). caf::flush_atom, caf::ok_atom and caf::get_atom come from
/// CAF itself.
namespace rollblock::atom {

using apply = caf::atom_constant<caf::atom("apply")>;
using revert = caf::atom_constant<caf::atom("revert")>;
using fetch = caf::atom_constant<caf::atom("fetch")>;
using pop = caf::atom_constant<caf::atom("pop")>;
using start = caf::atom_constant<caf::atom("start")>;
using set = caf::atom_constant<caf::atom("set")>;
using end = caf::atom_constant<caf::atom("end")>;
using heights = caf::atom_constant<caf::atom("heights")>;
using shutdown = caf::atom_constant<caf::atom("shutdown")>;
using healthy = caf::atom_constant<caf::atom("healthy")>;
using metrics = caf::atom_constant<caf::atom("metrics")>;
using health = caf::atom_constant<caf::atom("health")>;
using relaxed = caf::atom_constant<caf::atom("relaxed")>;
using strict = caf::atom_constant<caf::atom("strict")>;
using append = caf::atom_constant<caf::atom("append")>;
using sync = caf::atom_constant<caf::atom("sync")>;
using read = caf::atom_constant<caf::atom("read")>;
using truncate = caf::atom_constant<caf::atom("truncate")>;
using prune = caf::atom_constant<caf::atom("prune")>;
using drop = caf::atom_constant<caf::atom("drop")>;
using checkpoint = caf::atom_constant<caf::atom("checkpoint")>;
using clear = caf::atom_constant<caf::atom("clear")>;
using config = caf::atom_constant<caf::atom("config")>;
using fault = caf::atom_constant<caf::atom("fault")>;
using open = caf::atom_constant<caf::atom("open")>;
using flush = caf::flush_atom;
using ok = caf::ok_atom;

} // namespace rollblock::atom
