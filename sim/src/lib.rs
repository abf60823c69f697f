//! beaver-sim: the simulator (filled in by the simulation work).
