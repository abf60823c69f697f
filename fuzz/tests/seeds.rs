//! The committed seed corpus is what `beaver_fuzz::seeds` builds, and every
//! seed passes its target's checks. Runs on the stable toolchain without
//! the fuzzer, so CI replays the seeds through the checks even where it
//! cannot fuzz.

use std::path::Path;

/// The check each target runs on its input.
fn check(target: &str) -> fn(&[u8]) {
    match target {
        "wal_scan" => beaver_fuzz::wal::check_scan,
        "record" => beaver_fuzz::codec::check_records,
        "snapshot" => beaver_fuzz::codec::check_snapshot,
        "job_body" => beaver_fuzz::body::check_body,
        "settings" => beaver_fuzz::settings::check_settings,
        "beanstalk_command" => beaver_fuzz::beanstalk::check_beanstalk,
        "beanstalkd_binlog" => beaver_fuzz::beanstalk::check_binlog,
        other => panic!("no target {other}"),
    }
}

#[test]
fn committed_seeds_are_the_built_ones_and_pass_their_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let built = beaver_fuzz::seeds::all();
    for (target, name, bytes) in &built {
        let path = root.join(target).join(name);
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo run --example seeds`", path.display()));
        assert!(
            committed == *bytes,
            "{} differs from what seeds.rs builds",
            path.display()
        );
        check(target)(bytes);
    }
    let mut on_disk = 0;
    for dir in std::fs::read_dir(&root).expect("seeds/") {
        let dir = dir.expect("seeds/ entry").path();
        on_disk += std::fs::read_dir(&dir).expect("a target's seeds").count();
    }
    assert_eq!(
        on_disk,
        built.len(),
        "a file in seeds/ that seeds.rs does not build"
    );
}
