//! Rebuild when a file is added to or removed from `web/`: the web client is
//! built into the binary (`src/web.rs`), and `include_dir!` alone only
//! notices changes to files it already holds.

fn main() {
    println!("cargo:rerun-if-changed=web");
}
