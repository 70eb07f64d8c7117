// `sqlx::migrate!` embeds migrations/ at compile time but only tracks the files it read: a
// migration added there must rebuild the crate too.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
