#[switchboard::service]
pub trait Calculator {
    async fn add<T: Into<i64>>(&self, a: T, b: T) -> i64;
}

fn main() {}
