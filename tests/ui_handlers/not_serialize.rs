// A return type that serde cannot encode.
struct Opaque;

async fn give() -> Opaque {
    Opaque
}

fn main() {
    let _ = switchboard::Router::new().route("give", give);
}
