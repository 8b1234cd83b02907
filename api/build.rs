// `sqlx::migrate!` embeds the alert store's migrations when alerts/store.rs compiles;
// cargo does not know it read them, so a new file alone would not rebuild it.
fn main() {
    println!("cargo:rerun-if-changed=migrations/alerts");
}
