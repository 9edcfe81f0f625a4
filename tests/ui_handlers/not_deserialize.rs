// A parameter type that serde cannot decode.
struct Opaque;

async fn take(_: Opaque) -> i64 {
    1
}

fn main() {
    let _ = switchboard::Router::new().route("take", take);
}
