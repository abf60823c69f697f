//! The `beaver` command: a crash-safe job queue you can `kill -9` at any instant.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use beaver_cli::client::Server;
use beaver_cli::commands::{self, EnqueueOptions, Failure};
use beaver_cli::settings::{DEFAULT_SERVER, RunArgs, resolve};
use clap::{Args, CommandFactory, Parser, Subcommand};

/// mimalloc: the queue makes a few small allocations per job (id, payload,
/// records), and with the system allocator malloc/free was a fifth of the
/// server's CPU under load and a third of a million-job recovery. Asked
/// for plain blocks where their alignment suffices (see the module).
#[global_allocator]
static ALLOCATOR: beaver_cli::allocator::Allocator = beaver_cli::allocator::Allocator;

/// A crash-safe job queue: kill -9 it at any instant, and every job whose
/// enqueue was acknowledged is still there after the restart.
#[derive(Parser)]
#[command(name = "beaver", version, propagate_version = true)]
#[command(
    after_help = "Example:\n  beaver run                               # start on ./beaver-data\n  beaver enqueue --payload '{\"to\":\"ada\"}'  # in another shell\n  beaver status"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server is, for the client commands.
#[derive(Args, Clone)]
struct Remote {
    /// The server's URL
    #[arg(long, env = "BEAVER_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    server: String,
    /// The server's token, if it requires one
    #[arg(long, env = "BEAVER_TOKEN", hide_env_values = true, value_name = "T")]
    token: Option<String>,
    /// Print the published JSON instead of text
    #[arg(long)]
    json: bool,
}

impl Remote {
    fn server(&self) -> Result<Server, Failure> {
        Server::new(&self.server, self.token.clone()).map_err(Failure::from)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the queue: recover the data dir, serve the HTTP API and metrics, run jobs
    #[command(
        after_help = "Examples:\n  beaver run\n  beaver run --data-dir /var/lib/beaver --workers 16 --exec './handle-job.sh'\n  beaver run --listen 0.0.0.0:7070 --token \"$(cat /etc/beaver/token)\"\n  beaver run --workers 0 --beanstalk-listen 127.0.0.1:11300   # beanstalkd's protocol too\n  RUST_LOG=debug beaver run --config beaver.toml\n\nConfiguration: flags > BEAVER_* environment > --config TOML file > defaults.\nSIGTERM or Ctrl-C stops gracefully: running jobs finish (within the grace period), a snapshot is written, exit 0."
    )]
    Run(RunArgs),
    /// Add jobs: one from --payload, or many from a file (a JSON array, or one job object per line)
    #[command(
        after_help = "Examples:\n  beaver enqueue --payload '{\"to\":\"ada\"}' --id welcome-ada --max-attempts 5\n  beaver enqueue --file jobs.json          # [{\"payload\": ...}, ...]\n  seq 1000 | sed 's/.*/{\"payload\":&}/' | beaver enqueue --file -\n\nA job object: {\"id\"?, \"queue\"?, \"payload\", \"max_attempts\"?, \"timeout_ms\"?, \"delay_ms\"?, \"priority\"?}.\nThe whole file is parsed before anything is sent: bad JSON or an unknown field is named and nothing is enqueued.\nValues are checked by the server, one request (--batch jobs) at a time, each all or nothing: if it refuses one, the line is named with the lines enqueued before it (sending the file again is safe for jobs with ids: known ids are skipped).\nThe options (except --payload and --id) are defaults for jobs that do not set the field."
    )]
    Enqueue {
        /// A file of jobs (`-`: stdin)
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// One job's payload, any JSON value
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
        /// The job's id (enqueueing a known id again adds nothing)
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// The queue [default: default]
        #[arg(long, value_name = "Q")]
        queue: Option<String>,
        /// Attempts before the job is dead [default: the server's, 3]
        #[arg(long, value_name = "N")]
        max_attempts: Option<u32>,
        /// Time limit of one attempt, such as 30s [default: the server's, 30s]
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Wait before the first attempt, such as 5m
        #[arg(long, value_name = "DURATION")]
        delay: Option<String>,
        /// Higher runs first within a queue
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        priority: Option<i32>,
        /// Jobs per request, 1 to 10000
        #[arg(long, default_value_t = 500, value_name = "N",
              value_parser = clap::value_parser!(u16).range(1..=10_000))]
        batch: u16,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show counts per state, jobs in flight, dead jobs, the log and the last recovery
    #[command(
        after_help = "Examples:\n  beaver status\n  beaver status --json | jq .jobs\n  beaver status --data-dir ./beaver-data   # a stopped server: what a restart would recover\n\nWith --data-dir, files are only read (never changed); exit code 3 means a restart would refuse to start."
    )]
    Status {
        /// Read a stopped server's files instead of asking a server
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one job
    #[command(after_help = "Example:\n  beaver job welcome-ada")]
    Job {
        /// The job's id
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a dead job again (with a fresh set of attempts)
    #[command(after_help = "Examples:\n  beaver requeue welcome-ada\n  beaver requeue --all-dead")]
    Requeue {
        /// The job's id
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<String>,
        /// Every dead job
        #[arg(long)]
        all_dead: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Measure throughput, latency and restart time: start `beaver run` children on a temp dir and drive their HTTP API
    #[command(
        after_help = "Examples:\n  beaver bench                                  # every workload, temp data dirs under .\n  beaver bench --dir /var/tmp --only W5,W1,W2   # some workloads, on another disk\n  beaver bench --quick --only W1,W2             # a smoke run: counts / 10\n  beaver bench --only W5,Wb1,Wb2,Wb3,Wbmem      # beaver beanstalkd against Debian's beanstalkd\n\nWorkloads (each on its own `beaver run --handler noop` on 127.0.0.1, clients keep-alive, one request in flight each):\n  W5    disk probe: 100-byte write + fdatasync into a preallocated file, 1 thread (run first and last;\n        below 6,000/s the disk is in its slow state and the run's figures do not count)\n  W0    HTTP floor: GET /v1/ping (no core, no disk), 32 clients, 100,000 requests;\n        then `W0 1`: 20,000 from 1 client (one client's round trip)\n  W1    20,000 single-job enqueues, 1 client\n  W2    100,000 single-job enqueues, 32 clients\n  W2b   1,000,000 jobs in batches of 100, 8 clients (--workers 0: the backlog is kept)\n  W4    kill -9 the W2b server, restart: spawn to the first /v1/status showing every job\n  snap  W2 against that server, alone (W2@1M), then while a snapshot of it is built (W2+snap);\n        then kill -9 it again and time a restart from that snapshot (W4+snap)\n  W3    100,000 jobs (batches of 100, 8 clients) run by 8 noop workers: first enqueue to last completion\n  W3x   100,000 jobs enqueued, then drained over HTTP by 8 external workers (lease 100 with a long poll,\n        complete in batches): first lease to last completion answered\n  W3x1  1 external worker leasing and completing 1 job at a time, 10,000 jobs: latency per job\n  W2x   W2 alone, then W2 while 8 external workers drain what it enqueues (>= 80% of alone)\nBeanstalkd workloads (`beanstalkd -b DIR -f0`, Debian's 1.12, and `beaver beanstalkd -b DIR`, the same client,\n100-byte bodies; Wb1-Wb3 run both side by side in 4 rounds taken in turn; skipped without /usr/bin/beanstalkd):\n  Wb1   20,000 puts, 1 connection, each waiting for INSERTED (beaver >= 1x beanstalkd)\n  Wb2   100,000 puts over 32 connections (beaver >= 8x beanstalkd)\n  Wb3   100,000 jobs put, then reserve-with-timeout 1 + delete by 8 connections until all are gone (>= 4x)\n  Wbmem 1,000,000 puts, 8 connections with 100 in flight each: peak RSS and data dir size of both\nThe last lines are a Markdown table with each target and whether it was met. Never a test: timing varies."
    )]
    Bench(beaver_cli::bench::BenchArgs),
    /// Run jobs on this host: lease them from a server, run a command per job, report each outcome
    #[command(
        after_help = "Examples:\n  beaver work --server http://10.0.0.5:7070 --queue email --concurrency 8 --exec './send-email.sh'\n  BEAVER_TOKEN=s3cret beaver work --server http://q:7070 --queue a --queue b --concurrency 2 --exec 'python3 job.py' --json\n\nEach job runs as `/bin/sh -c CMD` with its payload on stdin and BEAVER_JOB_ID, BEAVER_ATTEMPT, BEAVER_QUEUE set; exit 0 completes it, anything else fails the attempt with the end of stderr as the error; past the job's timeout its process group gets SIGTERM, then SIGKILL.\nLeases are renewed well before they end; a lease the server calls lost has its command stopped and is never reported done.\nSIGTERM or Ctrl-C: no more leases, running jobs finish and are reported; a second signal kills them."
    )]
    Work(beaver_cli::work::WorkArgs),
    /// Serve beanstalkd's protocol on a beaver queue: a drop-in for `beanstalkd` that replies only once a change is durable
    #[command(
        version,
        disable_version_flag = true,
        args_override_self = true,
        after_help = "Examples:\n  beaver beanstalkd                       # 127.0.0.1:11300, a temporary data dir removed at exit\n  beaver beanstalkd -b /var/lib/beaver-bs -p 11300\n  beaver beanstalkd -l unix:/run/beaver.sock -b ./data\n\nTubes are queues, job ids are job numbers, buried jobs are dead jobs.\nOn a -b dir that holds beanstalkd's log (binlog.N; stop beanstalkd first), beanstalkd's jobs are taken over before serving.\nSIGUSR1: drain mode (puts answered DRAINING). SIGTERM or Ctrl-C: stop."
    )]
    Beanstalkd(beaver_cli::beanstalkd::BeanstalkdArgs),
    /// Cancel a pending job (or one still waiting for a free worker)
    #[command(after_help = "Example:\n  beaver cancel welcome-ada")]
    Cancel {
        /// The job's id
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Examples:\n  beaver completions bash > ~/.local/share/bash-completion/completions/beaver\n  beaver completions zsh > \"${fpath[1]}/_beaver\"\n  beaver completions fish > ~/.config/fish/completions/beaver.fish"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from the same definitions as --help
    #[command(
        after_help = "Examples:\n  beaver man | man -l -\n  beaver man > /usr/local/share/man/man1/beaver.1"
    )]
    Man,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person watching: a log file or collector gets
    // plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A server's runtime with `threads` threads running tasks. One thread is
/// tokio's current-thread scheduler: the multi-thread one with a single
/// worker has nobody to share work with, yet times every poll (clock reads,
/// a moving average) and wakes its driver through an eventfd.
fn server_runtime(threads: usize) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build().map_err(|e| Failure {
        message: format!("cannot start the runtime: {e}"),
        code: 1,
    })
}

fn run_server(args: &RunArgs) -> Result<(), Failure> {
    let settings = resolve(args).map_err(|m| Failure {
        message: m,
        code: 2,
    })?;
    beaver_cli::pages::disable_transparent_huge_pages();
    let rt = server_runtime(settings.threads)?;
    rt.block_on(beaver_cli::server::run(settings))
        .map_err(|m| Failure {
            message: m,
            code: 1,
        })
}

fn run_beanstalkd(args: &beaver_cli::beanstalkd::BeanstalkdArgs) -> Result<(), Failure> {
    let opts = args.options().map_err(|m| Failure {
        message: m,
        code: 2,
    })?;
    beaver_cli::pages::disable_transparent_huge_pages();
    if let Some(ms) = args.fsync_ms {
        eprintln!(
            "beaver beanstalkd: -f {ms} changes nothing: every change is fdatasynced before its reply"
        );
    }
    if args.never_fsync {
        eprintln!(
            "beaver beanstalkd: -F changes nothing: every change is fdatasynced before its reply"
        );
    }
    if let Some(asked) = args.segment_bytes.filter(|&s| s != opts.segment_bytes) {
        eprintln!(
            "beaver beanstalkd: -s {asked}: log segments are {} bytes (a multiple of 4,096 that holds the largest job whole)",
            opts.segment_bytes
        );
    }
    // As many runtime threads as `beaver run` takes by default (all CPUs
    // but one): on 2 CPUs a second thread made each put cross threads
    // twice, Wb1 0.44-0.52x beanstalkd against 0.73-0.76x with one
    // (docs/performance.md).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = server_runtime(beaver_cli::settings::default_threads(cpus))?;
    rt.block_on(beaver_cli::beanstalkd::run(opts))
        .map_err(|m| Failure {
            message: m,
            code: 1,
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => {
            init_tracing("info");
            run_server(args)
        }
        Command::Completions { shell } => {
            // Into memory first: the generator panics on a failed write
            // (`beaver completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "beaver", &mut script);
            print_bytes(&script, "the completion script")
        }
        Command::Man => man_page(),
        Command::Work(args) => {
            init_tracing("info");
            beaver_cli::work::run(args).map_err(|m| Failure {
                message: m,
                code: 1,
            })
        }
        Command::Beanstalkd(args) => {
            init_tracing(match args.verbose {
                0 => "warn",
                1 => "info",
                2 => "debug",
                _ => "trace",
            });
            run_beanstalkd(args)
        }
        Command::Bench(args) => {
            init_tracing("warn");
            beaver_cli::bench::run(args).map_err(|m| Failure {
                message: m,
                code: 1,
            })
        }
        other => {
            init_tracing("warn");
            client_command(other)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("beaver: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// `beaver man`: the page of `beaver` and, after it, one section per
/// subcommand, all from the clap definitions `--help` shows.
fn man_page() -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure {
        message: format!("cannot write the manual page: {e}"),
        code: 1,
    };
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(failed)?;
    for sub in cmd.get_subcommands() {
        let name = format!("beaver {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
        out.extend_from_slice(b".SH \"");
        out.extend_from_slice(name.to_uppercase().as_bytes());
        out.extend_from_slice(b"\"\n");
        let mut part = Vec::new();
        man.render_description_section(&mut part).map_err(failed)?;
        man.render_options_section(&mut part).map_err(failed)?;
        man.render_extra_section(&mut part).map_err(failed)?;
        // Its sections are subsections of the subcommand's own.
        let part = String::from_utf8_lossy(&part).replace(".SH ", ".SS ");
        out.extend_from_slice(part.as_bytes());
    }
    print_bytes(&out, "the manual page")
}

/// Writes generated text to stdout; a failure says what was not written.
fn print_bytes(bytes: &[u8], what: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure {
            message: format!("cannot write {what}: {e}"),
            code: 1,
        })
}

fn client_command(cmd: &Command) -> Result<(), Failure> {
    match cmd {
        Command::Run(_)
        | Command::Bench(_)
        | Command::Work(_)
        | Command::Beanstalkd(_)
        | Command::Completions { .. }
        | Command::Man => Ok(()),
        Command::Enqueue {
            file,
            payload,
            id,
            queue,
            max_attempts,
            timeout,
            delay,
            priority,
            batch,
            remote,
        } => commands::enqueue(
            &remote.server()?,
            &EnqueueOptions {
                file: file.clone(),
                payload: payload.clone(),
                id: id.clone(),
                queue: queue.clone(),
                max_attempts: *max_attempts,
                timeout: timeout.clone(),
                delay: delay.clone(),
                priority: *priority,
                batch: usize::from(*batch),
                json: remote.json,
            },
        ),
        Command::Status { data_dir, remote } => match data_dir {
            Some(d) => commands::status_offline(d, remote.json),
            None => commands::status(&remote.server()?, remote.json),
        },
        Command::Job { id, remote } => commands::job(&remote.server()?, id, remote.json),
        Command::Requeue {
            id,
            all_dead: _,
            remote,
        } => commands::requeue(&remote.server()?, id.as_deref(), remote.json),
        Command::Cancel { id, remote } => commands::cancel(&remote.server()?, id, remote.json),
    }
}
