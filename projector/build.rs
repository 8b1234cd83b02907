// `sqlx::migrate!` embeds the migrations when store.rs compiles, and cargo does not
// know it read them: a new migration file alone left a binary without it (a 10M bench
// store went without migration 0009's index). Rebuild when the directory changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
