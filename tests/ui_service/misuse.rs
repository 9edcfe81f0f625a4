// Smaller mistakes, all reported at once.
#[switchboard::service]
pub trait Calculator {
    async fn add(&mut self, a: i64, b: i64) -> i64;
    #[notification]
    async fn log(&self, line: String) -> bool;
    async fn greet(&self, name: &str) -> String;
    async fn connect(&self) -> ();
}

fn main() {}
