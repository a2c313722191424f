//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds them at compile time and
//! cannot tell Cargo on stable Rust.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
