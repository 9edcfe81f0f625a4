// An error type that is not Send (Box<dyn Error> without + Send + Sync).
async fn fails() -> Result<i64, Box<dyn std::error::Error>> {
    Err("no".into())
}

fn main() {
    let _ = switchboard::Router::new().route("fails", fails);
}
