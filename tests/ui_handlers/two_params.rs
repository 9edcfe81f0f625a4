// Two parameter arguments: the parameters are one value (a tuple or struct).
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {
    let _ = switchboard::Router::new().route("add", add);
}
