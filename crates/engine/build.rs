//! Rebuild when the built-in catalog changes: `include_dir!` embeds `connectors/` at build time.

fn main() {
    println!("cargo:rerun-if-changed=../../connectors");
}
