// A plain fn given to `route` (it wants an async fn).
fn add((a, b): (i64, i64)) -> i64 {
    a + b
}

fn main() {
    let _ = switchboard::Router::new().route("add", add);
}
