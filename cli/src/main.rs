//! The `beaver` command (filled in by the command work).

fn main() {
    println!("beaver {}: the command is not built yet", env!("CARGO_PKG_VERSION"));
}
