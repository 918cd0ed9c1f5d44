//! Rebuilds the gateway when a migration is added: `sqlx::migrate!` embeds the migrations directories at compile time.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations_postgres");
}
