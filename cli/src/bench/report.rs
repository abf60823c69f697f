//! One line per workload as it finishes, and at the end a Markdown table
//! (for the README) with each target and whether it was met.

use std::fmt::Write;

use super::probe::FAST_DISK_SYNCS_PER_SEC;
use super::server::Fsyncs;
use super::workloads::CONCURRENT_CLIENTS;

const MIB: f64 = (1u64 << 20) as f64;

/// What one workload measured.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Its name: `W0`, `W2b`, `W2+snap`...
    pub name: String,
    /// What it does, in a few words.
    pub what: String,
    /// What `count` counts: `jobs`, `reqs` or `syncs`.
    pub unit: &'static str,
    /// Jobs (requests for W0, fdatasyncs for W5).
    pub count: u64,
    /// Seconds it took.
    pub secs: f64,
    /// Latency (p50, p99, max) in ms, where requests were timed.
    pub latency_ms: Option<(f64, f64, f64)>,
    /// WAL fdatasyncs and the records they made durable.
    pub fsyncs: Option<Fsyncs>,
    /// CPU the server (and the benchmark's own process) used during the
    /// workload, in cores (CPU seconds / wall seconds).
    pub cores: Option<(f64, f64)>,
    /// The server's peak resident memory (bytes).
    pub rss_peak: Option<u64>,
    /// The data dir's size on disk (bytes).
    pub data_bytes: Option<u64>,
    /// Anything else worth saying.
    pub note: String,
}

impl Row {
    /// `count` per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.secs.max(1e-9)
    }

    /// The line printed when the workload finishes.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<9} {:>9} {:<5} {:>7.3} s {:>9.0}/s",
            self.name,
            self.count,
            self.unit,
            self.secs,
            self.rate()
        );
        match self.latency_ms {
            Some((p50, p99, max)) => {
                let _ = write!(s, "  p50 {p50:>6.2} p99 {p99:>6.2} max {max:>7.2} ms");
            }
            None => s.push_str(&" ".repeat(39)),
        }
        if let Some(f) = self.fsyncs {
            let _ = write!(
                s,
                "  fsyncs {:>7} {:>6.1} rec/fsync",
                f.fsyncs,
                per_fsync(f)
            );
            if let Some(us) = fsync_us(f) {
                let _ = write!(s, " {us:>5.0} us/fsync");
            }
        }
        if let Some((server, bench)) = self.cores {
            let _ = write!(s, "  CPU {server:>4.2}+{bench:>4.2} cores");
        }
        if let Some(r) = self.rss_peak {
            let _ = write!(s, "  RSS {:>4.0} MiB", r as f64 / MIB);
        }
        if let Some(d) = self.data_bytes {
            let _ = write!(s, "  data {:>4.0} MiB", d as f64 / MIB);
        }
        if !self.note.is_empty() {
            let _ = write!(s, "  ({})", self.note);
        }
        s
    }
}

fn per_fsync(f: Fsyncs) -> f64 {
    f.records as f64 / f.fsyncs.max(1) as f64
}

/// The mean fdatasync's time, in microseconds; `None` without fsyncs.
fn fsync_us(f: Fsyncs) -> Option<f64> {
    (f.fsyncs > 0).then(|| 1e6 * f.seconds / f.fsyncs as f64)
}

/// The legend printed before the lines.
pub const HEADER: &str = "latency: one request, sent to whole answer; fsyncs, records per fsync and the mean fdatasync's time: the server's /metrics before and after; CPU: server + benchmark process, in cores busy; RSS: the server's peak (VmHWM); data: the data dir on disk (du)";

/// An estimate of the best W2's closed-loop clients can reach when each
/// request takes what it takes on the HTTP floor `w0` (run with the same
/// clients: by Little's law, clients / its rate) plus one W5 fdatasync, as
/// a note for W2's target cell (empty if W5 did not run). Not a floor: a
/// server may overlap part of the two.
fn w2_estimate(w0: &Row, w5: Option<&Row>) -> String {
    let Some(w5) = w5 else {
        return String::new();
    };
    if w0.rate() <= 0.0 || w5.rate() <= 0.0 {
        return String::new();
    }
    let clients = CONCURRENT_CLIENTS as f64;
    let best = clients / (clients / w0.rate() + 1.0 / w5.rate());
    format!(
        "; W0's time + one W5 fdatasync: about {best:.0}/s = {:.0}% of W0",
        100.0 * best / w0.rate()
    )
}

/// The target of a beanstalkd workload's beaver row (`Wb1 beaver`...):
/// beaver's rate at least this many times the reference's; Wbmem only
/// reports its ratios.
fn beanstalk_target(rows: &[Row], r: &Row) -> Option<(String, Option<bool>)> {
    let workload = r.name.strip_suffix(" beaver")?;
    let reference = rows
        .iter()
        .find(|x| x.name == format!("{workload} beanstalkd"));
    if workload == "Wbmem" {
        let b = reference?;
        let ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if b > 0 => format!("{:.2}x", a as f64 / b as f64),
            _ => "-".into(),
        };
        let text = format!(
            "report: RSS {}, data {}, rate {:.2}x of beanstalkd's",
            ratio(r.rss_peak, b.rss_peak),
            ratio(r.data_bytes, b.data_bytes),
            r.rate() / b.rate().max(1e-9)
        );
        return Some((text, None));
    }
    let factor = match workload {
        "Wb1" => 1.0,
        "Wb2" => 8.0,
        "Wb3" => 4.0,
        _ => return None,
    };
    Some(match reference {
        Some(b) => {
            let ratio = r.rate() / b.rate().max(1e-9);
            (
                format!(">= {factor:.1}x beanstalkd: {ratio:.2}x"),
                Some(ratio >= factor),
            )
        }
        None => (format!(">= {factor:.1}x beanstalkd"), None),
    })
}

/// A target: its text, and whether it was met (`None`: what it compares
/// with did not run).
fn target(rows: &[Row], r: &Row) -> (String, Option<bool>) {
    if let Some(t) = beanstalk_target(rows, r) {
        return t;
    }
    let find = |name: &str| rows.iter().find(|x| x.name == name);
    let p99 = r.latency_ms.map_or(f64::INFINITY, |l| l.1);
    match r.name.as_str() {
        "W5" | "W5 again" => (
            format!("fast state: >= {FAST_DISK_SYNCS_PER_SEC:.0}/s"),
            Some(r.rate() >= FAST_DISK_SYNCS_PER_SEC),
        ),
        "W1" => match find("W5") {
            // No floor beside W5 itself: the client and the server's thread
            // can share a CPU, so an ack need not pay `W0 1`'s round trip.
            Some(w5) => (
                format!(
                    ">= 85% of W5: {:.0}% ({:.0}/s)",
                    100.0 * r.rate() / w5.rate(),
                    w5.rate()
                ),
                Some(r.rate() >= 0.85 * w5.rate()),
            ),
            None => (">= 85% of W5".into(), None),
        },
        "W2" => match find("W0") {
            Some(w0) => {
                // An estimate of the best the same clients can do: each
                // request takes W0's time plus at least one fdatasync begun
                // after its record was written.
                let estimate = w2_estimate(w0, find("W5"));
                (
                    format!(
                        ">= 85% of W0: {:.0}%; p99 < 5 ms{estimate}",
                        100.0 * r.rate() / w0.rate()
                    ),
                    Some(r.rate() >= 0.85 * w0.rate() && p99 < 5.0),
                )
            }
            None => (">= 85% of W0; p99 < 5 ms".into(), None),
        },
        "W2b" => (">= 300,000/s".into(), Some(r.rate() >= 300_000.0)),
        "W3" => (">= 100,000/s".into(), Some(r.rate() >= 100_000.0)),
        "W3x" => (">= 25,000/s".into(), Some(r.rate() >= 25_000.0)),
        "W2x+drain" => match find("W2x alone") {
            Some(base) => (
                format!(
                    ">= 80% of W2x alone: {:.0}%",
                    100.0 * r.rate() / base.rate()
                ),
                Some(r.rate() >= 0.8 * base.rate()),
            ),
            None => (">= 80% of W2x alone".into(), None),
        },
        "W4" | "W4+snap" => (
            "< 0.3 s, RSS < 600 MiB, data < 300 MiB".into(),
            Some(
                r.secs < 0.3
                    && r.rss_peak.is_some_and(|b| (b as f64) < 600.0 * MIB)
                    && r.data_bytes.is_some_and(|b| (b as f64) < 300.0 * MIB),
            ),
        ),
        // The same server and backlog without the snapshot is the fair
        // baseline (a fresh server holds no backlog).
        "W2+snap" => match find("W2@1M").or_else(|| find("W2")) {
            Some(base) => (
                format!(
                    ">= 80% of {}: {:.0}%; p99 < 10 ms",
                    base.name,
                    100.0 * r.rate() / base.rate()
                ),
                Some(r.rate() >= 0.8 * base.rate() && p99 < 10.0),
            ),
            None => (">= 80% of W2@1M; p99 < 10 ms".into(), None),
        },
        _ => (String::new(), None),
    }
}

/// The Markdown table of every row, its target and whether it was met,
/// and the disk's state.
pub fn table(rows: &[Row], quick: bool) -> String {
    let mut s = String::new();
    s.push_str("| workload | what | count | s | per s | p50 ms | p99 ms | max ms | fsyncs | records/fsync | µs/fsync | CPU cores server+bench | peak RSS MiB | data dir MiB | target | met |\n");
    s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n");
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for r in rows {
        let (t, met) = target(rows, r);
        let (p50, p99, max) = match r.latency_ms {
            Some((a, b, c)) => (
                Some(format!("{a:.2}")),
                Some(format!("{b:.2}")),
                Some(format!("{c:.1}")),
            ),
            None => (None, None, None),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} {} | {:.3} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.what,
            r.count,
            r.unit,
            r.secs,
            r.rate(),
            opt(p50),
            opt(p99),
            opt(max),
            opt(r.fsyncs.map(|f| f.fsyncs.to_string())),
            opt(r.fsyncs.map(|f| format!("{:.1}", per_fsync(f)))),
            opt(r.fsyncs.and_then(fsync_us).map(|us| format!("{us:.0}"))),
            opt(r.cores.map(|(a, b)| format!("{a:.2}+{b:.2}"))),
            opt(r.rss_peak.map(|b| format!("{:.0}", b as f64 / MIB))),
            opt(r.data_bytes.map(|b| format!("{:.0}", b as f64 / MIB))),
            if t.is_empty() { "-" } else { t.as_str() },
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        );
    }
    let probes: Vec<&Row> = rows
        .iter()
        .filter(|r| r.name == "W5" || r.name == "W5 again")
        .collect();
    if probes.is_empty() {
        s.push_str("\nNo disk probe (W5) in this run: the figures have nothing to stand beside.\n");
    } else if probes.iter().any(|r| r.rate() < FAST_DISK_SYNCS_PER_SEC) {
        let _ = writeln!(
            s,
            "\nTHE DISK WAS IN ITS SLOW STATE (W5 < {FAST_DISK_SYNCS_PER_SEC:.0} fdatasyncs/s): these figures do not count; run again later."
        );
    } else {
        let _ = writeln!(
            s,
            "\nThe disk was in its fast state (W5 >= {FAST_DISK_SYNCS_PER_SEC:.0} fdatasyncs/s before and after)."
        );
    }
    if quick {
        s.push_str("--quick: counts were divided by 10; the targets are for a full run.\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, count: u64, secs: f64, p99: f64) -> Row {
        Row {
            name: name.into(),
            unit: "jobs",
            count,
            secs,
            latency_ms: Some((p99 / 2.0, p99, p99 * 2.0)),
            ..Row::default()
        }
    }

    /// A W5 row of `syncs_per_sec`.
    fn probe(syncs_per_sec: u64) -> Row {
        Row {
            unit: "syncs",
            ..row("W5", syncs_per_sec, 1.0, 0.0)
        }
    }

    #[test]
    fn targets_compare_with_their_reference_rows() {
        let rows = vec![
            probe(8_000),
            row("W0", 100_000, 1.0, 1.0),
            row("W1", 7_000, 1.0, 1.0),
            row("W2", 90_000, 1.0, 6.0),
        ];
        assert_eq!(target(&rows, &rows[0]).1, Some(true));
        assert_eq!(target(&rows, &rows[2]).1, Some(true));
        // 90% of W0 but p99 over 5 ms.
        assert_eq!(target(&rows, &rows[3]).1, Some(false));
        let t = table(&rows, false);
        assert!(t.contains("fast state"), "{t}");
        assert_eq!(t.lines().filter(|l| l.starts_with("| W")).count(), 4);
    }

    #[test]
    fn a_restart_from_a_snapshot_has_w4s_target() {
        let restart = |name: &str, secs: f64, data_mib: u64| Row {
            latency_ms: None,
            rss_peak: Some(500 << 20),
            data_bytes: Some(data_mib << 20),
            ..row(name, 1_000_000, secs, 0.0)
        };
        for name in ["W4", "W4+snap"] {
            let ok = restart(name, 0.28, 290);
            assert_eq!(target(&[], &ok).1, Some(true), "{name}");
            let slow = restart(name, 0.31, 290);
            assert_eq!(target(&[], &slow).1, Some(false), "{name}");
            let big = restart(name, 0.28, 334);
            let (text, met) = target(&[], &big);
            assert_eq!(met, Some(false), "{name}");
            assert!(text.contains("data < 300 MiB"), "{text}");
        }
    }

    #[test]
    fn w1_is_compared_with_w5_alone() {
        let rows = vec![
            probe(8_000),
            row("W0 1", 20_000, 1.0, 0.1),
            row("W1", 6_000, 1.0, 1.0),
        ];
        let (text, met) = target(&rows, &rows[2]);
        assert_eq!(met, Some(false));
        assert_eq!(text, ">= 85% of W5: 75% (8000/s)");
        let rows = vec![probe(8_000), row("W1", 6_900, 1.0, 1.0)];
        assert_eq!(target(&rows, &rows[1]).1, Some(true));
    }

    #[test]
    fn w2_shows_an_estimate_of_w0s_time_plus_one_fsync() {
        let rows = vec![
            probe(8_000),
            row("W0", 128_000, 1.0, 0.5),
            row("W2", 50_000, 1.0, 1.0),
        ];
        let (text, met) = target(&rows, &rows[2]);
        assert_eq!(met, Some(false));
        // 32 / (32/128000 + 1/8000) = 32 / 0.000375 = 85333/s = 67% of W0.
        assert!(
            text.contains(
                "W0: 39%; p99 < 5 ms; W0's time + one W5 fdatasync: about 85333/s = 67% of W0"
            ),
            "{text}"
        );
    }

    #[test]
    fn beanstalk_rows_compare_beaver_with_beanstalkd() {
        let rows = vec![
            row("Wb1 beanstalkd", 1_000, 1.0, 1.0),
            row("Wb1 beaver", 900, 1.0, 1.0),
            row("Wb2 beanstalkd", 1_000, 1.0, 1.0),
            row("Wb2 beaver", 8_000, 1.0, 1.0),
            Row {
                rss_peak: Some(10 << 20),
                data_bytes: Some(100),
                ..row("Wbmem beanstalkd", 1_000, 1.0, 1.0)
            },
            Row {
                rss_peak: Some(20 << 20),
                data_bytes: Some(150),
                ..row("Wbmem beaver", 2_000, 1.0, 1.0)
            },
        ];
        let t = |i: usize| target(&rows, &rows[i]);
        assert_eq!(t(0), (String::new(), None));
        assert_eq!(t(1), (">= 1.0x beanstalkd: 0.90x".into(), Some(false)));
        assert_eq!(t(3), (">= 8.0x beanstalkd: 8.00x".into(), Some(true)));
        assert_eq!(
            t(5),
            (
                "report: RSS 2.00x, data 1.50x, rate 2.00x of beanstalkd's".into(),
                None
            )
        );
        // Without the reference's row: no verdict.
        assert_eq!(target(&rows[1..2], &rows[1]).1, None);
    }

    #[test]
    fn group_commit_figures_are_per_fsync() {
        let mut w2 = row("W2", 48_000, 1.0, 1.0);
        w2.fsyncs = Some(Fsyncs {
            fsyncs: 4_000,
            records: 48_000,
            seconds: 0.6,
        });
        let line = w2.line();
        assert!(line.contains("12.0 rec/fsync   150 us/fsync"), "{line}");
        let t = table(&[w2.clone()], false);
        assert!(t.contains("| 4000 | 12.0 | 150 |"), "{t}");
        // No fsyncs (the HTTP floor): no mean time.
        w2.fsyncs = Some(Fsyncs::default());
        assert!(!w2.line().contains("us/fsync"), "{}", w2.line());
        assert!(table(&[w2], false).contains("| 0 | 0.0 | - |"));
    }
}
