//! Executors: what runs one attempt of a job.
