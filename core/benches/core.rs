//! The core's speed and memory on 1,000,000 jobs.
//!
//! Run: `cargo bench -p beaver-core` (release build). Prints one line per
//! figure. `BEAVER_BENCH_JOBS` changes the job count. It allocates with
//! mimalloc, the allocator the `beaver` binary uses.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use beaver_core::{Config, Core, Effect, Input, JobSpec, Outcome, Payload, RequestId, codec};

/// Counts live heap bytes, to measure memory per job (sizes as requested,
/// so the figure does not depend on the allocator's own overhead).
struct Counting;

static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the inner allocator.
        unsafe { INNER.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the inner allocator.
        unsafe { INNER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the inner allocator.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let n: u64 = std::env::var("BEAVER_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("BEAVER_BENCH_ONLY").ok();
    let payload = Payload::from_json(br#""0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123""#)
        .expect("valid JSON");
    let paused = Config {
        workers: 0,
        ..Config::default()
    };
    let q = enqueue_apply(n, &payload, &paused);
    if only.as_deref() == Some("enqueue") {
        return;
    }
    if !snapshot_and_recovery(q, n, &paused, only.as_deref() == Some("recovery")) {
        return;
    }
    dispatch_complete(n, &payload);
}

/// Enqueue + apply: one job per request, each made durable at once.
/// Returns the core, holding `n` pending jobs.
fn enqueue_apply(n: u64, payload: &Payload, paused: &Config) -> Core {
    let mut out: Vec<Effect> = Vec::with_capacity(64);
    let before = LIVE.load(Ordering::Relaxed);
    let mut q = Core::new(paused.clone());
    let t = Instant::now();
    for i in 0..n {
        q.step(
            i,
            Input::Enqueue {
                req: RequestId(i),
                jobs: vec![JobSpec::new(payload.clone())],
            },
            &mut out,
        );
        out.clear();
        q.step(i, Input::Durable { upto: i + 1 }, &mut out);
        out.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    let held = LIVE.load(Ordering::Relaxed) - before;
    let payload_heap = n as usize * payload.len();
    println!(
        "enqueue+apply       {n} jobs in {secs:.3} s = {:.0} enqueue steps/s (each enqueue plus its durable step)",
        n as f64 / secs
    );
    println!(
        "memory              {:.0} bytes per pending job beyond its {}-byte payload ({} MiB total)",
        (held - payload_heap) as f64 / n as f64,
        payload.len(),
        held >> 20
    );
    q
}

/// Snapshot encode / decode / recovery fold of `q`. With `recovery_only`,
/// recovers three times without printing (for profiles) and returns false.
fn snapshot_and_recovery(q: Core, n: u64, paused: &Config, recovery_only: bool) -> bool {
    // What the runtime's disk reserve measures at every segment close.
    let t = Instant::now();
    let (drain, len) = (q.drain(), codec::queue_snapshot_len(&q));
    let figures = t.elapsed().as_secs_f64();
    let t = Instant::now();
    // What the snapshot build does: encode straight from the core.
    let bytes = codec::encode_queue_snapshot(&q);
    let encode = t.elapsed().as_secs_f64();
    if recovery_only {
        drop(q);
        for _ in 0..3 {
            let _ = Core::recover_encoded(paused.clone(), &bytes, []).expect("recovers");
        }
        return false;
    }
    let t = Instant::now();
    let decoded = codec::decode_snapshot(&bytes).expect("snapshot decodes");
    let decode = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let recovered = Core::recover(paused.clone(), Some(decoded), []).expect("recovers");
    let fold = t2.elapsed().as_secs_f64();
    println!(
        "snapshot encode     {encode:.3} s, {} MiB ({:.0} bytes per job)",
        bytes.len() >> 20,
        bytes.len() as f64 / n as f64
    );
    assert_eq!(
        len,
        bytes.len() as u64,
        "the snapshot's length kept as jobs change"
    );
    println!(
        "reserve figures     {:.1} us (drain: {} records; snapshot length), what every segment close measures",
        figures * 1e6,
        drain.records
    );
    println!("snapshot decode     {decode:.3} s");
    println!(
        "recovery fold       {fold:.3} s (restore into the queue); decode + fold = {:.3} s",
        decode + fold
    );
    assert_eq!(recovered.stats().jobs.pending, n);
    drop(recovered);
    let t = Instant::now();
    let streamed = Core::recover_encoded(paused.clone(), &bytes, []).expect("recovers");
    println!(
        "recovery streamed   {:.3} s (decode straight into the queue: what start-up does)",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(streamed.stats().jobs.pending, n);
    drop((q, streamed, bytes));
    true
}

/// Dispatch + complete: 8 workers, 8 prefetched, every record durable at once.
fn dispatch_complete(n: u64, payload: &Payload) {
    let mut out: Vec<Effect> = Vec::with_capacity(64);
    let mut q = Core::new(Config {
        workers: 8,
        prefetch: 8,
        ..Config::default()
    });
    let jobs: Vec<JobSpec> = (0..1_000).map(|_| JobSpec::new(payload.clone())).collect();
    for b in 0..n / 1_000 {
        q.step(
            0,
            Input::Enqueue {
                req: RequestId(b),
                jobs: jobs.clone(),
            },
            &mut out,
        );
        out.clear();
    }
    let mut pending = Vec::new();
    let mut steps = 0u64;
    let t = Instant::now();
    q.step(
        1,
        Input::Durable {
            upto: q.next_lsn() - 1,
        },
        &mut out,
    );
    loop {
        let mut durable_to = None;
        for e in out.drain(..) {
            match e {
                Effect::Append(r) => durable_to = Some(r.lsn),
                Effect::Execute(x) => pending.push((x.id, x.attempt)),
                _ => {}
            }
        }
        if let Some(upto) = durable_to {
            q.step(2, Input::Durable { upto }, &mut out);
            steps += 1;
            continue;
        }
        let Some((id, attempt)) = pending.pop() else {
            break;
        };
        let outcome = Outcome::Succeeded;
        q.step(
            2,
            Input::Outcome {
                id,
                attempt,
                outcome,
            },
            &mut out,
        );
        steps += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let done = q.stats().totals.completed;
    println!(
        "dispatch+complete   {done} jobs in {secs:.3} s = {:.0} jobs/s ({:.0} steps/s)",
        done as f64 / secs,
        steps as f64 / secs
    );
    assert_eq!(done, n);
}
