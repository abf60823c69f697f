//! beaver-io: storage (filled in by the storage work).
