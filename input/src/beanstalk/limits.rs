//! The limits one protocol server's connections share, derived from the
//! engine's configuration.

use std::time::Duration;

use beaver_runtime::EngineConfig;

/// The limits one server's connections share.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// The largest job body (`-z`; `JOB_TOO_BIG` beyond it).
    pub job_bytes_max: u32,
    /// The log's segment size (`binlog-max-size` in `stats`).
    pub segment_bytes: u64,
    /// The longest wait one lease request may ask of the core.
    pub lease_wait_max: Duration,
    /// The attempts a put job gets.
    pub put_attempts: u32,
    /// The longest TTR a put keeps, in ms; a longer one is cut to it.
    pub ttr_ms_max: u64,
}

impl ServeLimits {
    /// The limits of a protocol server beside `beaver run`'s HTTP API, on
    /// an engine configured as `engine`: bodies as large as beanstalkd's
    /// default that the engine's payload limits still take, `put_attempts`
    /// attempts per job and as long a TTR as the limits allow. `Err` when
    /// the payload limits are too small for any body.
    pub fn for_engine(engine: &EngineConfig, put_attempts: u32) -> Result<ServeLimits, String> {
        let l = &engine.queue.limits;
        let payload_max = l.payload_bytes_max.min(l.batch_bytes_max);
        // The inverse of the `beaver` crate's beanstalkd::body::payload_bytes_max
        // (a body of n bytes is a payload of at most 6n + 64).
        let fits = payload_max.saturating_sub(64) / 6;
        let job_bytes_max = u32::try_from(fits)
            .unwrap_or(u32::MAX)
            .min(super::JOB_BYTES_MAX_DEFAULT);
        if job_bytes_max == 0 {
            return Err(format!(
                "[engine.queue.limits] payload_bytes_max and batch_bytes_max are {} and {}: too small for a beanstalk job; give at least 70 bytes",
                l.payload_bytes_max, l.batch_bytes_max
            ));
        }
        Ok(ServeLimits {
            job_bytes_max,
            segment_bytes: engine.segment_bytes,
            lease_wait_max: Duration::from_millis(l.lease_wait_max_ms),
            put_attempts,
            ttr_ms_max: l.timeout_ms_max,
        })
    }
}
